// Unit tests of the SDK's state machine, on the built bundle (dist/), with
// fake timers (node:test mock.timers), a scripted fetch, a fake media element
// and a fake window for pagehide/pageshow.
import { test, mock, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { watch } from "../dist/viewpulse.mjs";

const E = "https://ingest.test";
let calls; // every request: {path, body, init}
let script; // path -> array of answers (status, body, headers) or "network"
let win; // the fake window
let beacons;
let random;

beforeEach(() => {
  mock.timers.enable({ apis: ["setTimeout"] });
  calls = [];
  beacons = [];
  script = { join: [], heartbeat: [], leave: [] };
  random = 0.5;
  mock.method(Math, "random", () => random);
  globalThis.setInterval = () => assert.fail("setInterval drifts: the SDK must chain setTimeout");
  win = new EventTarget();
  globalThis.addEventListener = win.addEventListener.bind(win);
  globalThis.removeEventListener = win.removeEventListener.bind(win);
  Object.defineProperty(globalThis, "navigator", {
    configurable: true,
    value: { sendBeacon: (url, body) => (beacons.push({ url, body }), true) },
  });
  globalThis.fetch = async (url, init) => {
    assert.ok(url.startsWith(E + "/v1/viewers/"), url);
    const path = url.slice(E.length + "/v1/viewers/".length);
    calls.push({ path, body: JSON.parse(init.body), init });
    const a = script[path].shift() ?? defaults[path]();
    if (a === "network") throw new TypeError("Failed to fetch");
    return new Response(JSON.stringify(a.body), { status: a.status, headers: a.headers });
  };
});
afterEach(() => {
  mock.timers.reset();
  mock.restoreAll();
});

let n = 0;
const joined = (interval = 10, viewers = 1) => ({
  status: 200,
  body: { session_id: "s" + ++n, viewers, heartbeat_interval_seconds: interval, timeout_seconds: interval * 4, rejoined: false },
});
const defaults = {
  join: () => joined(),
  heartbeat: () => ({ status: 200, body: { viewers: 2 } }),
  leave: () => ({ status: 200, body: { closed: true } }),
};
const err = (status, code, headers) => ({ status, body: { error: { code, message: code } }, headers });

// settle lets every pending promise (fetch, Response.json) run.
async function settle() {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}
async function tick(ms) {
  mock.timers.tick(ms);
  await settle();
}
const paths = () => calls.map((c) => c.path);
const count = (p) => calls.filter((c) => c.path === p).length;

async function start(opts = {}) {
  const states = [];
  const counts = [];
  const errors = [];
  const w = watch({
    endpoint: E + "/",
    stageArn: "arn:aws:ivs:us-east-1:123456789012:stage/abcd",
    userId: "alice",
    onState: (s) => states.push(s),
    onCount: (c) => counts.push(c),
    onError: (e) => errors.push(e),
    ...opts,
  });
  await settle();
  return { w, states, counts, errors };
}

// waitsExactly checks that the next request comes exactly `ms` after now.
async function waitsExactly(ms, path) {
  const before = calls.length;
  await tick(ms - 1);
  assert.equal(calls.length, before, `no request before ${ms} ms`);
  await tick(1);
  assert.equal(calls.length, before + 1, `a request at ${ms} ms`);
  if (path) assert.equal(calls.at(-1).path, path);
}

test("joins, reports the count, heartbeats on the server's interval", async () => {
  script.join.push(joined(10, 3));
  const { w, states, counts } = await start();
  assert.deepEqual(calls[0].body, { stage_arn: "arn:aws:ivs:us-east-1:123456789012:stage/abcd", user_id: "alice" });
  assert.equal(calls[0].init.headers["Content-Type"], "application/json");
  assert.equal(w.viewers, 3);
  assert.match(w.sessionId, /^s\d+$/);
  await waitsExactly(10_000, "heartbeat");
  assert.deepEqual(calls[1].body, { session_id: w.sessionId });
  await waitsExactly(10_000, "heartbeat");
  assert.deepEqual(counts, [3, 2, 2]);
  assert.deepEqual(states, ["joining", "watching"]);
  w.stop();
});

test("jitter stays within ±10 % of the interval", async () => {
  random = 0; // the earliest
  const a = await start();
  await waitsExactly(9_000, "heartbeat");
  a.w.stop();
  random = 1; // the latest (Math.random() < 1, so this bounds it)
  calls = [];
  const b = await start();
  random = 0.25; // read when the answer schedules the next heartbeat
  await waitsExactly(11_000, "heartbeat");
  await waitsExactly(9_500, "heartbeat");
  b.w.stop();
});

test("network errors back off exponentially, jittered, capped at 60 s", async () => {
  random = 1; // the top of each jitter range: the cap itself
  for (let i = 0; i < 10; i++) script.join.push("network");
  const { errors, states } = await start();
  assert.equal(errors[0].status, 0);
  assert.equal(states.at(-1), "retrying");
  const caps = [1, 2, 4, 8, 16, 32, 60, 60, 60];
  for (const [i, cap] of caps.entries()) {
    if (i === caps.length - 1) random = 0; // the last failure waits the bottom: half the cap
    await waitsExactly(cap * 1000, "join");
  }
  await waitsExactly(30_000, "join");
  assert.equal(states.at(-1), "watching"); // the 11th join succeeded
  // A success resets the backoff: the next failure waits 1 s at most again.
  script.heartbeat.push(err(500, "internal"));
  await waitsExactly(9_000, "heartbeat");
  await waitsExactly(500, "heartbeat");
});

test("other 5xx back off; 429 and 503 honour Retry-After", async () => {
  random = 0;
  script.join.push(err(502, "bad_gateway"), err(503, "dependency_unavailable", { "Retry-After": "7" }));
  const { errors } = await start();
  await waitsExactly(500, "join"); // backoff [0.5 s, 1 s]
  await waitsExactly(7_000, "join"); // Retry-After: 7, not the backoff's 1 s
  script.heartbeat.push(err(429, "rate_limited", { "Retry-After": "3" }));
  random = 1; // up to 10 % later than Retry-After (the heartbeat's 9 s was drawn before)
  await waitsExactly(9_000, "heartbeat");
  await waitsExactly(3_300, "heartbeat");
  assert.deepEqual(errors.map((e) => e.code), ["bad_gateway", "dependency_unavailable", "rate_limited"]);
});

test("404 session_not_found on a heartbeat rejoins", async () => {
  random = 0;
  const { w } = await start();
  const first = w.sessionId;
  script.heartbeat.push(err(404, "session_not_found"));
  await tick(9_000);
  assert.deepEqual(paths(), ["join", "heartbeat", "join"], "rejoined at once");
  assert.notEqual(w.sessionId, first);
  await waitsExactly(9_000, "heartbeat");
  assert.deepEqual(calls.at(-1).body, { session_id: w.sessionId });
});

test("401 asks getToken for a fresh token, then rejoins; a second 401 fails", async () => {
  const tokens = ["t1", "t2", "t3"];
  const getToken = mock.fn(async () => tokens.shift());
  script.join.push(err(401, "token_expired"));
  const { w, states } = await start({ getToken, userId: undefined, stageArn: undefined });
  assert.deepEqual(calls.map((c) => c.body), [{ token: "t1" }, { token: "t2" }]);
  assert.equal(getToken.mock.callCount(), 2);
  assert.equal(states.at(-1), "watching");
  assert.ok(w.sessionId);
  w.stop();

  calls = [];
  script.join.push(err(401, "invalid_token"), err(401, "invalid_token"));
  const b = await start({ token: "given", getToken });
  assert.deepEqual(calls.map((c) => c.body.token), ["given", "t3"]);
  assert.equal(b.states.at(-1), "failed");
  await tick(120_000);
  assert.equal(calls.length, 2, "no retries after failing");
});

test("media: joins on play, keeps heartbeating while paused, leaves after pausedLeaveSeconds, rejoins on play", async () => {
  random = 0;
  const media = Object.assign(new EventTarget(), { paused: true, ended: false });
  const { w, states } = await start({ media, pausedLeaveSeconds: 30 });
  assert.equal(calls.length, 0, "no join before the media plays");
  assert.deepEqual(states, ["idle"]);
  media.paused = false;
  media.dispatchEvent(new Event("play"));
  media.dispatchEvent(new Event("playing"));
  await settle();
  assert.deepEqual(paths(), ["join"]);
  const sid = w.sessionId;

  media.paused = true;
  media.dispatchEvent(new Event("pause"));
  await waitsExactly(9_000, "heartbeat");
  await waitsExactly(9_000, "heartbeat");
  await waitsExactly(9_000, "heartbeat");
  await waitsExactly(3_000, "leave"); // 30 s after the pause
  const leave = calls.at(-1);
  assert.deepEqual(leave.body, { session_id: sid });
  assert.equal(leave.init.headers["Content-Type"], "text/plain");
  assert.equal(leave.init.keepalive, true);
  assert.equal(w.sessionId, null);
  assert.equal(states.at(-1), "left");
  await tick(600_000);
  assert.equal(paths().at(-1), "leave", "nothing while paused");

  media.paused = false;
  media.dispatchEvent(new Event("play"));
  await settle();
  assert.equal(paths().at(-1), "join");
  assert.equal(states.at(-1), "watching");

  // A short pause (under pausedLeaveSeconds) changes nothing.
  media.paused = true;
  media.dispatchEvent(new Event("pause"));
  await waitsExactly(9_000, "heartbeat");
  media.paused = false;
  media.dispatchEvent(new Event("play"));
  await tick(60_000);
  assert.equal(count("leave"), 1);
  media.ended = true;
  media.dispatchEvent(new Event("ended"));
  await tick(30_000);
  assert.equal(count("leave"), 2, "ended counts as paused");
});

test("pagehide (not persisted): a sendBeacon leave with a text body, then silence", async () => {
  const { w, states } = await start();
  const sid = w.sessionId;
  const e = new Event("pagehide");
  e.persisted = false;
  win.dispatchEvent(e);
  assert.deepEqual(beacons, [{ url: E + "/v1/viewers/leave", body: JSON.stringify({ session_id: sid }) }]);
  assert.equal(typeof beacons[0].body, "string", "a string body is sent as text/plain: no preflight");
  assert.equal(states.at(-1), "left");
  await tick(600_000);
  assert.deepEqual(paths(), ["join"], "no heartbeat after the page went away");
});

test("pagehide into the bfcache sends no leave; pageshow (persisted) rejoins", async () => {
  random = 0;
  const { w, states } = await start();
  const hide = new Event("pagehide");
  hide.persisted = true;
  win.dispatchEvent(hide);
  assert.deepEqual(beacons, []);
  assert.equal(states.at(-1), "left");
  await tick(600_000);
  assert.deepEqual(paths(), ["join"], "frozen: no heartbeat");

  const show = new Event("pageshow");
  show.persisted = true;
  win.dispatchEvent(show);
  await settle();
  assert.deepEqual(paths(), ["join", "join"]);
  assert.equal(states.at(-1), "watching");
  await waitsExactly(9_000, "heartbeat");
  assert.deepEqual(calls.at(-1).body, { session_id: w.sessionId });
  const plain = new Event("pageshow"); // a first load, not from the bfcache
  plain.persisted = false;
  win.dispatchEvent(plain);
  await settle();
  assert.equal(count("join"), 2);
});

test("stop leaves and silences everything; a stale answer is dropped", async () => {
  let release;
  script.join.push(joined());
  const { w } = await start();
  // A heartbeat in flight when stop() is called must not restart the chain.
  const realFetch = globalThis.fetch;
  globalThis.fetch = (url, init) =>
    url.endsWith("heartbeat") ? new Promise((r) => (release = () => r(realFetch(url, init)))) : realFetch(url, init);
  await tick(11_000);
  assert.ok(release, "heartbeat sent");
  const sid = w.sessionId;
  w.stop();
  await settle();
  assert.deepEqual(calls.at(-1).body, { session_id: sid });
  assert.equal(calls.at(-1).path, "leave");
  release();
  await tick(600_000);
  assert.equal(calls.at(-1).path, "heartbeat"); // the released one, recorded late
  assert.equal(count("heartbeat"), 1, "no chain after stop");
  assert.equal(w.sessionId, null);
});
