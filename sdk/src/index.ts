// ViewPulse player SDK: counts one viewer of a stage while its player plays.
//
// watch() joins, heartbeats on a jittered setTimeout chain at the interval the
// server names, leaves when the media has been paused for a while or the page
// goes away (navigator.sendBeacon on pagehide), and rejoins when it comes
// back. Failures are retried: 404 session_not_found rejoins, 401 asks
// getToken() for a fresh token, 429/503 wait Retry-After, network errors and
// other 5xx back off exponentially (jittered, capped at 60 s).
//
// No dependencies: this file is the whole IIFE bundle (window.ViewPulse).

/** Options of {@link watch}. */
export interface WatchOptions {
  /** Base URL of ViewPulse ingest, e.g. "https://views.example.com". */
  endpoint: string;
  /** The IVS stage ARN (optional with a token, which names it). */
  stageArn?: string;
  /** The viewer's user id (optional with a token, which names it). */
  userId?: string;
  /** The IVS participant id, if any. */
  participantId?: string;
  /** A viewer token (VIEWER_AUTH=token): an IVS participant token or one from POST /v1/tokens. */
  token?: string;
  /** Returns a fresh token; called before the first join without `token`, and on every 401. */
  getToken?: () => string | Promise<string>;
  /** The player's media element: counted while it plays. */
  media?: HTMLMediaElement;
  /** Seconds paused or ended before the viewer leaves the count (default 60). */
  pausedLeaveSeconds?: number;
  /** The stage's live viewer count, from every join and heartbeat answer. */
  onCount?: (viewers: number) => void;
  /** Each change of state. */
  onState?: (state: State) => void;
  /** Each failed request (the SDK retries on its own unless the state becomes "failed"). */
  onError?: (error: ViewPulseError) => void;
}

/**
 * idle: waiting for the media to play; joining; watching (session open,
 * heartbeating); retrying (waiting to repeat a request); left (paused past
 * pausedLeaveSeconds, or the page was hidden); failed (a refusal that
 * retrying cannot fix, e.g. 400 or 403); stopped (stop() was called).
 */
export type State = "idle" | "joining" | "watching" | "retrying" | "left" | "failed" | "stopped";

/** A failed request: HTTP status (0 for a network error or timeout) and the server's error code. */
export interface ViewPulseError {
  status: number;
  code: string;
  message: string;
}

/** What {@link watch} returns. */
export interface Watch {
  /** Leaves (if in a session) and stops every timer and listener. */
  stop(): void;
  /** The open session's id, or null. */
  readonly sessionId: string | null;
  /** The last live count received, or null. */
  readonly viewers: number | null;
}

const MAX_BACKOFF = 60_000;

/** Starts counting a viewer; see {@link WatchOptions}. */
export function watch(o: WatchOptions): Watch {
  const base = o.endpoint.replace(/\/+$/, "") + "/v1/viewers/";
  const media = o.media;
  const leaveAfter = (o.pausedLeaveSeconds ?? 60) * 1000;
  let token = o.token;
  let sid: string | null = null;
  let viewers: number | null = null;
  let state: State | "" = "";
  let interval = 30_000; // until the first join answers
  let failures = 0; // consecutive retryable failures, for the backoff
  let refreshed = false; // a 401 already got a fresh token
  let gen = 0; // bumped by every transition: answers of an older generation are dropped
  let timer: ReturnType<typeof setTimeout> | undefined;
  let leaveTimer: ReturnType<typeof setTimeout> | undefined;

  const set = (s: State) => {
    if (s !== state) o.onState?.((state = s));
  };
  const after = (ms: number, f: () => void) => {
    clearTimeout(timer);
    timer = setTimeout(f, ms);
  };
  // ±10 % around the server's interval.
  const jittered = () => interval * (0.9 + 0.2 * Math.random());
  const playing = () => !media || (!media.paused && !media.ended);

  async function post(path: string, body: object, g: number): Promise<any> {
    const ctl = new AbortController();
    // An answer later than an interval is of no use: retry instead.
    const t = setTimeout(() => ctl.abort(), Math.min(Math.max(interval, 1000), 10_000));
    let res: Response;
    try {
      res = await fetch(base + path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: ctl.signal,
      });
    } catch (e) {
      throw { status: 0, code: "network", message: String(e) };
    } finally {
      clearTimeout(t);
    }
    const json = await res.json().catch(() => ({}));
    if (g !== gen) throw null; // superseded while in flight
    if (res.ok) return json;
    const err: ViewPulseError & { retry?: number } = {
      status: res.status,
      code: json?.error?.code ?? "http_" + res.status,
      message: json?.error?.message ?? res.statusText,
    };
    const ra = Number(res.headers.get("Retry-After"));
    if ((res.status === 429 || res.status === 503) && ra > 0) err.retry = ra * 1000;
    throw err;
  }

  // fail handles a failed join or heartbeat; again repeats it.
  async function fail(e: any, g: number, again: () => void) {
    if (e === null || g !== gen) return;
    o.onError?.(e);
    const s = e.status;
    if (s === 404 && sid) {
      sid = null; // session_not_found: the server closed it; open another
      return join();
    }
    if (s === 401 && o.getToken && !refreshed) {
      refreshed = true;
      try {
        token = await o.getToken();
      } catch (err) {
        o.onError?.({ status: 0, code: "get_token", message: String(err) });
      }
      if (g === gen) join();
      return;
    }
    if (s >= 400 && s < 500 && s !== 408 && s !== 409 && s !== 429) {
      gen++;
      return set("failed"); // 400, 401 again, 403: repeating cannot help
    }
    set("retrying");
    // Retry-After (up to 10 % later, so a crowd does not return at once), else
    // equal-jitter exponential backoff: [cap/2, cap], cap = 1 s·2^n ≤ 60 s.
    const cap = Math.min(MAX_BACKOFF, 1000 * 2 ** failures++);
    after(e.retry ? e.retry * (1 + 0.1 * Math.random()) : cap / 2 + (Math.random() * cap) / 2, again);
  }

  async function join() {
    const g = ++gen;
    clearTimeout(timer);
    set("joining");
    try {
      if (!token && o.getToken) token = await o.getToken();
      const r = await post(
        "join",
        { stage_arn: o.stageArn, user_id: o.userId, participant_id: o.participantId, token },
        g,
      );
      sid = r.session_id;
      interval = (r.heartbeat_interval_seconds || 30) * 1000; // never a tight loop
      ok(r);
    } catch (e) {
      fail(e, g, join);
    }
  }

  async function beat() {
    const g = gen;
    try {
      ok(await post("heartbeat", { session_id: sid }, g));
    } catch (e) {
      fail(e, g, beat);
    }
  }

  function ok(r: { viewers: number }) {
    failures = 0;
    refreshed = false;
    set("watching");
    o.onCount?.((viewers = r.viewers));
    after(jittered(), beat);
  }

  // leave closes the session: by beacon when the page goes away (fetch may
  // not outlive it), else by a keepalive fetch. text/plain needs no preflight.
  function leave(beacon: boolean, next: State) {
    gen++;
    clearTimeout(timer);
    clearTimeout(leaveTimer);
    leaveTimer = undefined;
    if (sid) {
      const body = JSON.stringify({ session_id: sid });
      if (!(beacon && (globalThis as any).navigator?.sendBeacon?.(base + "leave", body)))
        fetch(base + "leave", { method: "POST", headers: { "Content-Type": "text/plain" }, body, keepalive: true }).catch(() => {});
    }
    sid = null;
    set(next);
  }

  const start = () => {
    clearTimeout(leaveTimer);
    leaveTimer = undefined;
    if (state === "idle" || state === "left") join();
  };
  const onPause = () => {
    if (sid && !leaveTimer) leaveTimer = setTimeout(() => leave(false, "left"), leaveAfter);
    if (!sid && state !== "left") {
      gen++; // not joined yet: do not join while paused
      clearTimeout(timer);
      set("idle");
    }
  };
  const onHide = (e: PageTransitionEvent) => {
    if (!e.persisted) return leave(true, "left");
    // Into the back/forward cache: timers freeze; rejoin on pageshow (a
    // join by a viewer still present continues the session).
    gen++;
    clearTimeout(timer);
    clearTimeout(leaveTimer);
    leaveTimer = undefined;
    set("left");
  };
  const onShow = (e: PageTransitionEvent) => {
    if (e.persisted) playing() ? join() : set("idle");
  };

  const on = (t: EventTarget | undefined, ev: string, f: any, add: boolean) =>
    add ? t?.addEventListener?.(ev, f) : t?.removeEventListener?.(ev, f);
  const listen = (add: boolean) => {
    on(media, "play", start, add);
    on(media, "playing", start, add);
    on(media, "pause", onPause, add);
    on(media, "ended", onPause, add);
    on(globalThis, "pagehide", onHide, add);
    on(globalThis, "pageshow", onShow, add);
  };

  listen(true);
  if (playing()) join();
  else set("idle");

  return {
    stop() {
      listen(false);
      leave(false, "stopped");
    },
    get sessionId() {
      return sid;
    },
    get viewers() {
      return viewers;
    },
  };
}
