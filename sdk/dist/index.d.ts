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
/** Starts counting a viewer; see {@link WatchOptions}. */
export declare function watch(o: WatchOptions): Watch;
