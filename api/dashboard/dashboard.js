// ViewPulse operators' page. Reads /v1/stages once, then follows /v1/live
// (Server-Sent Events read with fetch, so the API key travels in the
// Authorization header, never in a URL). The key, when the server needs one,
// is kept in sessionStorage only.
"use strict";

(function () {
  const KEY = "viewpulse_api_key";
  const RANGES = { hour: 3600, day: 86400, week: 7 * 86400 };
  const STAT_ROWS = [
    ["total_views", "Views", String],
    ["unique_viewers", "Unique viewers", String],
    ["avg_watch_seconds", "Average watch time", duration],
    ["total_watch_seconds", "Total watch time", duration],
    ["peak_viewers", "Peak viewers", String],
    ["peak_at", "Peak at", (v) => (v ? new Date(v).toLocaleString() : "–")],
  ];
  const BREAKDOWNS = ["country", "device", "os", "browser"];

  const $ = (sel) => document.querySelector(sel);
  const state = {
    stages: new Map(), // arn -> {name, viewers}
    selected: null,
    range: "hour",
    snapshots: [], // [[unixSeconds, viewers]] of the selected stage
    live: new Map(), // arn -> [[unixSeconds, viewers]] seen on the stream
    plot: null,
    abort: null,
    retry: 2000,
  };

  class Unauthorized extends Error {}

  function headers() {
    const k = sessionStorage.getItem(KEY);
    return k ? { Authorization: "Bearer " + k } : {};
  }

  async function api(path) {
    const resp = await fetch(path, { headers: headers(), cache: "no-store" });
    if (resp.status === 401) throw new Unauthorized();
    let body = null;
    try { body = await resp.json(); } catch (_) { /* not JSON */ }
    return { status: resp.status, ok: resp.ok, body };
  }

  function duration(s) {
    s = Math.round(Number(s) || 0);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h ? `${h}h ${m}m` : m ? `${m}m ${r}s` : `${r}s`;
  }

  function needKey(message) {
    if (state.abort) state.abort.abort();
    $("#key-form").hidden = false;
    $("#key-error").textContent = message || "";
    setConn("API key needed", "bad");
    $("#key-input").focus();
  }

  function setConn(text, cls) {
    const el = $("#conn");
    el.textContent = text;
    el.className = "badge " + (cls || "");
  }

  function setRedis(ok) {
    $("#redis-state").hidden = ok;
  }

  // ---- stage list ----------------------------------------------------------

  function renderStages() {
    const tbody = $("#stages tbody");
    const arns = [...state.stages.keys()].sort();
    $("#no-stages").hidden = arns.length > 0;
    let total = 0;
    const rows = [];
    for (const arn of arns) {
      const st = state.stages.get(arn);
      total += st.viewers;
      let tr = tbody.querySelector(`tr[data-stage="${CSS.escape(arn)}"]`);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.stage = arn;
        tr.innerHTML = '<td><span class="name"></span><span class="arn"></span></td><td class="num count"></td>';
        tr.addEventListener("click", () => select(arn));
      }
      tr.querySelector(".name").textContent = st.name || "";
      tr.querySelector(".arn").textContent = arn;
      tr.querySelector(".count").textContent = String(st.viewers);
      tr.classList.toggle("selected", arn === state.selected);
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
    $("#total").textContent = String(total);
  }

  async function loadStages() {
    const r = await api("/v1/stages");
    if (!r.ok) {
      setRedis(r.status !== 503);
      return false;
    }
    for (const s of r.body.stages || []) {
      state.stages.set(s.stage_arn, { name: s.stage_name || "", viewers: s.viewers || 0 });
    }
    renderStages();
    return true;
  }

  // ---- live stream ---------------------------------------------------------

  async function follow() {
    for (;;) {
      const ctl = new AbortController();
      state.abort = ctl;
      try {
        const resp = await fetch("/v1/live", { headers: headers(), signal: ctl.signal, cache: "no-store" });
        if (resp.status === 401) throw new Unauthorized();
        if (!resp.ok || !resp.body) throw new Error("live: HTTP " + resp.status);
        setConn("live", "ok");
        await readEvents(resp.body.getReader());
      } catch (e) {
        if (e instanceof Unauthorized) { needKey("the key was refused"); return; }
        if (ctl.signal.aborted) return;
      }
      setConn("reconnecting…", "bad");
      await new Promise((res) => setTimeout(res, state.retry));
    }
  }

  async function readEvents(reader) {
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
          else if (line.startsWith("retry:")) state.retry = Number(line.slice(6)) || state.retry;
        }
        if (data) onEvent(event, JSON.parse(data));
      }
    }
  }

  // A group's viewers are its distinct users (one on two of its stages
  // counts once), its capacity the sum of its stages' max_viewers.
  function renderGroups(groups) {
    $("#groups-pane").hidden = groups.length === 0;
    const rows = groups.map((g) => {
      const tr = document.createElement("tr");
      tr.dataset.group = g.master_stage_arn;
      tr.innerHTML = '<td><span class="arn"></span><span class="muted"></span></td><td class="num count"></td><td class="num cap"></td>';
      tr.querySelector(".arn").textContent = g.master_stage_arn;
      tr.querySelector(".muted").textContent = ` ${g.stages} stage${g.stages === 1 ? "" : "s"}`;
      tr.querySelector(".count").textContent = String(g.viewers);
      tr.querySelector(".cap").textContent = g.capacity === null ? "no limit" : String(g.capacity);
      return tr;
    });
    $("#groups tbody").replaceChildren(...rows);
  }

  function onEvent(event, data) {
    if (event === "status") {
      setRedis(data.redis === "ok");
      return;
    }
    if (event === "groups") {
      renderGroups(data.groups);
      return;
    }
    if (event !== "counts") return;
    setRedis(true);
    const now = Date.now() / 1000;
    for (const { stage_arn: arn, viewers } of data.stages) {
      const st = state.stages.get(arn) || { name: "", viewers: 0 };
      st.viewers = viewers;
      state.stages.set(arn, st);
      const pts = state.live.get(arn) || [];
      pts.push([now, viewers]);
      if (pts.length > 5000) pts.splice(0, pts.length - 5000);
      state.live.set(arn, pts);
    }
    renderStages();
    if (state.selected && data.stages.some((s) => s.stage_arn === state.selected)) drawChart();
  }

  // ---- one stage -----------------------------------------------------------

  async function select(arn) {
    state.selected = arn;
    renderStages();
    $("#detail").hidden = false;
    const st = state.stages.get(arn);
    $("#detail-title").textContent = (st && st.name) ? `${st.name} — ${arn}` : arn;
    await Promise.all([loadSnapshots(), loadStats(), loadBreakdowns()]);
  }

  async function loadSnapshots() {
    const arn = state.selected;
    const to = new Date(), from = new Date(to.getTime() - RANGES[state.range] * 1000);
    const q = `?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
    let pts = [], ok = false;
    try {
      const r = await api(`/v1/stages/${encodeURIComponent(arn)}/snapshots${q}`);
      if (r.ok) {
        ok = true;
        pts = (r.body.points || []).map((p) => [Date.parse(p.snapshot_time) / 1000, p.viewer_count]);
      }
    } catch (e) {
      if (e instanceof Unauthorized) return needKey("the key was refused");
    }
    if (arn !== state.selected) return;
    $("#history-state").hidden = ok;
    state.snapshots = pts;
    drawChart();
  }

  // chartData is the snapshots of the range, then the live points since the
  // last snapshot, then the count now.
  function chartData() {
    const now = Date.now() / 1000;
    const since = now - RANGES[state.range];
    const pts = state.snapshots.filter((p) => p[0] >= since);
    const last = pts.length ? pts[pts.length - 1][0] : since;
    for (const p of state.live.get(state.selected) || []) if (p[0] > last) pts.push(p);
    const st = state.stages.get(state.selected);
    pts.push([now, st ? st.viewers : 0]);
    return [pts.map((p) => p[0]), pts.map((p) => p[1])];
  }

  function drawChart() {
    const el = $("#chart");
    const data = chartData();
    if (state.plot && state.plot._range === state.range && state.plot._stage === state.selected) {
      state.plot.setData(data);
      return;
    }
    if (state.plot) state.plot.destroy();
    const width = Math.max(320, el.clientWidth || 640);
    state.plot = new uPlot({
      width, height: 300,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [{}, { label: "viewers", stroke: "#2563eb", width: 2, fill: "rgba(37,99,235,.12)", points: { show: true, size: 4 } }],
      axes: [{}, { label: "viewers" }],
    }, data, el);
    state.plot._range = state.range;
    state.plot._stage = state.selected;
  }

  async function loadStats() {
    const arn = state.selected;
    const cols = [];
    let ok = true;
    for (const days of [1, 7, 30]) {
      try {
        const r = await api(`/v1/stages/${encodeURIComponent(arn)}/stats?days=${days}`);
        if (!r.ok) ok = false;
        cols.push(r.ok ? r.body : null);
      } catch (e) {
        if (e instanceof Unauthorized) return needKey("the key was refused");
        ok = false;
        cols.push(null);
      }
    }
    if (arn !== state.selected) return;
    if (!ok) $("#history-state").hidden = false;
    const tbody = $("#stats tbody");
    tbody.replaceChildren(...STAT_ROWS.map(([field, label, fmt]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = label;
      tr.append(th);
      for (const c of cols) {
        const td = document.createElement("td");
        td.className = "num";
        td.dataset.field = field;
        td.textContent = c ? fmt(c[field]) : "–";
        tr.append(td);
      }
      return tr;
    }));
  }

  // loadBreakdowns shows the analytics breakdowns when the server has the
  // route; a 404 (older server) leaves the section hidden.
  async function loadBreakdowns() {
    const arn = state.selected;
    const tables = [];
    for (const by of BREAKDOWNS) {
      let r;
      try {
        r = await api(`/v1/stages/${encodeURIComponent(arn)}/breakdown?by=${by}&days=7`);
      } catch (e) {
        if (e instanceof Unauthorized) return needKey("the key was refused");
        continue;
      }
      if (!r.ok || !r.body) continue;
      const rows = Array.isArray(r.body) ? r.body : Object.values(r.body).find(Array.isArray) || [];
      const t = document.createElement("table");
      t.innerHTML = `<thead><tr><th></th><th class="num">views</th><th class="num">unique</th><th class="num">watch</th></tr></thead><tbody></tbody>`;
      t.querySelector("th").textContent = by;
      for (const row of rows.slice(0, 10)) {
        const tr = document.createElement("tr");
        for (const v of [row.key || "(unknown)", row.views, row.unique_viewers, duration(row.watch_seconds)]) {
          const td = document.createElement("td");
          td.textContent = String(v ?? "");
          tr.append(td);
        }
        tr.children[1].className = tr.children[2].className = tr.children[3].className = "num";
        t.tBodies[0].append(tr);
      }
      tables.push(t);
    }
    if (arn !== state.selected) return;
    $("#breakdown-tables").replaceChildren(...tables);
    $("#breakdowns").hidden = tables.length === 0;
  }

  // ---- start ---------------------------------------------------------------

  async function start() {
    $("#key-form").hidden = true;
    try {
      await loadStages();
    } catch (e) {
      if (e instanceof Unauthorized) return needKey(sessionStorage.getItem(KEY) ? "the key was refused" : "");
      setRedis(false);
    }
    follow();
    if (state.selected) select(state.selected);
  }

  $("#key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const k = $("#key-input").value.trim();
    if (!k) return;
    sessionStorage.setItem(KEY, k);
    $("#key-input").value = "";
    start();
  });
  for (const b of document.querySelectorAll("#ranges button")) {
    b.addEventListener("click", () => {
      state.range = b.dataset.range;
      for (const o of document.querySelectorAll("#ranges button")) o.classList.toggle("active", o === b);
      if (state.selected) loadSnapshots();
    });
  }
  window.addEventListener("resize", () => {
    if (state.plot) state.plot.setSize({ width: Math.max(320, $("#chart").clientWidth), height: 300 });
  });
  start();
})();
