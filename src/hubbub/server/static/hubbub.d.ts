/**
 * hubbub.js: the browser (and Node 20+) client of a hubbub hub.
 *
 * One logical connection that survives any number of real ones: it reconnects
 * with exponential backoff and full jitter, joins its rooms again with `since`
 * set to the last offset it delivered, drops repeats by offset, tells the app
 * when a room could not be recovered (`room_reset`), turns requests into
 * promises, and queues sends while disconnected.
 *
 * ```js
 * import { Hubbub } from "/hubbub.js";
 * const hub = new Hubbub({ name: "ada" });
 * hub.on("message", (m) => console.log(m.room, m.from, m.message));
 * hub.on("state", (s) => console.log(s.state, s.attempt, s.delay));
 * await hub.connect();
 * await hub.join("lobby");
 * await hub.send("lobby", "hello");
 * ```
 *
 * The wire protocol is docs/protocol.md; the rules of reconnecting are in
 * clients/js/README.md.
 */

/** Where the client is in its life.
 * - `idle`: made, `connect()` not called yet.
 * - `connecting`: dialing, or connected and re-joining its rooms (sends stay queued until `open`).
 * - `open`: connected, rooms joined, queued sends flushed.
 * - `reconnecting`: the connection dropped or a dial failed; waiting `delay` ms before the next attempt.
 * - `closed`: final, after `close()` or an error that retrying cannot fix (see `StateChange.error`).
 */
export type State = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** A string, or a function (possibly async) that returns one. */
export type Provider = string | (() => string | Promise<string>);

/** Backoff between reconnect attempts (all in milliseconds). The delay before attempt `n` (1, 2, ...)
 * is a uniform random value in `[0, min(max, base * 2 ** (n - 1))]` ("full jitter"); `n` goes back
 * to 1 once a connection has stayed open for `stable` ms. */
export interface BackoffOptions {
  /** The first attempt's upper bound. Default 250. */
  base?: number;
  /** The largest delay. Default 30000. */
  max?: number;
  /** How long a connection must last before the attempt count is reset. Default 10000. */
  stable?: number;
}

export interface HubbubOptions {
  /** The WebSocket URL. Default: `/ws` on the page's own host, `wss:` when the page is `https:`. */
  url?: string;
  /** Display name for an anonymous connection (`?name=`); ignored by the server with a ticket or token. */
  name?: string;
  /**
   * A ticket for a server started with `--users`: a function that obtains a fresh one (e.g. with
   * {@link login}), called before every connect, since a ticket is good for one handshake only.
   * If it throws a HubbubError whose `detail.status` is 400-499 but not 429 (as {@link login} does for
   * a wrong password), the client stops (`closed`, with that error): a failed login is the browser's
   * only way to see a 401. Any other error (the network, 429, 503) is retried with backoff, its
   * message as the `state` event's `reason`. A ticket refused at the handshake is a failed dial.
   */
  ticket?: () => string | Promise<string>;
  /**
   * A signed token for a server started with `--auth-secret`, sent as the subprotocol
   * `hubbub.token.<T>` (never in the URL). A function is called before every connect and again
   * `refreshBefore` seconds before the token's `exp`, and the new token is sent with `refresh`.
   * A plain string cannot be refreshed: when it expires the server closes with 1008 and the client stops.
   * A function that throws is treated as a `ticket` function that throws.
   */
  token?: Provider;
  /** Seconds before a token's `exp` to refresh it (at most half its remaining life). Default 30. */
  refreshBefore?: number;
  /** The WebSocket class. Default: `globalThis.WebSocket` (browsers, Node 22, Node 20 with
   * `--experimental-websocket`). Without one, `transport: "auto"` uses SSE. */
  WebSocket?: typeof WebSocket;
  /**
   * How to reach the server. Default `"auto"`: a WebSocket, and where one cannot be opened (its
   * dial fails before `open`, as behind a proxy or antivirus that refuses the `Upgrade`) the same
   * dial tries the SSE transport at once: `GET /sse` down (read with `fetch`), `POST /sse/send` up,
   * with the same API, re-joins with `since`, acks, offline queue, backoff and credentials (a
   * ticket or `name` as in the WebSocket URL, a token as `?token=`, cookies by themselves). The
   * transport that worked is remembered for the page's life (per `url`): a reconnect or a second
   * client does not try the other. `"websocket"` never falls back (as before); `"sse"` never tries
   * a WebSocket. See docs/protocol.md, "The SSE transport".
   */
  transport?: "auto" | "websocket" | "sse";
  /** The SSE stream's URL. Default: `url` with `ws:`/`wss:` made `http:`/`https:` and `/ws` made `/sse`;
   * the up-channel is this URL's path + `/send`. */
  sseUrl?: string;
  /** The `fetch` the SSE transport uses. Default `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Reconnect backoff; see {@link BackoffOptions}. */
  backoff?: BackoffOptions;
  /** Milliseconds a request waits for its `ack` or `error` once sent. Default 10000. */
  timeout?: number;
  /** How many sends may wait while disconnected. Past it, a new send is refused at once
   * (its promise rejects with code `queue_full`, and a `dropped` event is emitted); the queued
   * ones are kept. Default 100. */
  queueLimit?: number;
  /** Milliseconds a dial may take (TCP, TLS and the handshake) before it counts as failed and is
   * retried. Default 10000. */
  connectTimeout?: number;
  /** After this many failed dials in a row while the server's `/healthz` answers 200 (so the server is
   * up and refused the handshake: a bad ticket or token, a foreign origin, a bad name), stop with
   * code `refused` instead of retrying. 0 never stops. Default 3. */
  maxRefusals?: number;
}

/** A `new_message`: a message published to a room this client is in. */
export interface Message<M = unknown> {
  room: string;
  message: M;
  /** The sender's identity. */
  from: string;
  /** The server's UTC time, RFC 3339 with milliseconds, e.g. `2026-11-26T09:14:03.512Z`. */
  sent: string;
  /** The message's offset in its room: increasing, never reused (a 53-bit integer, not a count). */
  offset: number;
}

/** `member_joined` / `member_left`: an identity's first connection joined, or its last one left, a room. */
export interface MemberEvent {
  room: string;
  name: string;
  /** With `member_joined`: the public info the application's connect proxy gave this identity
   * (`--connect-proxy`, docs/integration.md), when it gave one. */
  info?: Record<string, unknown>;
}

/** `presence_count` (a hubbub extension): a room of more than `--presence-events-max-members` identities
 * gets this in place of `member_joined` / `member_left` at each presence flush with changes; ask
 * `get_presence` for the names. */
export interface PresenceCount {
  room: string;
  /** Identities in the room, cluster-wide. */
  count: number;
}

/** Emitted on every state change. */
export interface StateChange {
  state: State;
  /** The previous state. */
  previous: State;
  /** With `connecting` and `reconnecting`: the number of this reconnect attempt (0 for the first
   * connect, then 1, 2, ... until a connection has been stable for `backoff.stable` ms); with `open`,
   * the attempt that succeeded. */
  attempt: number;
  /** With `reconnecting`: milliseconds until the next attempt. */
  delay?: number;
  /** The close code of the connection that just ended, when there was one (1006: dropped or refused). */
  code?: number;
  /** The close reason, when the server gave one. */
  reason?: string;
  /** With `closed`: why the client gave up, unless `close()` was called. */
  error?: HubbubError;
}

/** A room joined (or joined again after a reconnect). */
export interface Joined {
  room: string;
  /** The room's latest offset at the join. */
  offset: number;
  /** True when this is the automatic re-join after a reconnect. */
  rejoin: boolean;
  /** On a re-join, or a join with `since`: whether every missed message is being replayed. */
  recovered?: boolean;
}

/** A room whose missed messages could not all be replayed after a reconnect (`recovered: false`):
 * some were lost to this client. Reload the room's state, e.g. with `history(room)`. */
export interface RoomReset {
  room: string;
  /** The last offset this client had delivered before the reconnect. */
  since: number;
  /** The room's latest offset now. */
  offset: number;
}

/** A send refused because the offline queue was full. */
export interface Dropped {
  room: string;
  message: unknown;
  reason: "queue_full";
}

/** Any server event that is not `new_message`, `member_joined`, `member_left`, `ack` or `error`:
 * an app's own. */
export interface AppEvent {
  type: string;
  payload: any;
}

/** The events of the client, by name, and what the listener gets. Any other name receives the
 * payload of server events of that type (an app's own events), unless the type is one of the client's
 * own event names below: those come only through `event`. */
export interface EventMap {
  message: Message;
  member_joined: MemberEvent;
  member_left: MemberEvent;
  presence_count: PresenceCount;
  state: StateChange;
  joined: Joined;
  room_reset: RoomReset;
  dropped: Dropped;
  /** An `error` from the server that no request is waiting for, a failed token refresh, a room that
   * could not be re-joined, or the reason the client stopped. */
  error: HubbubError;
  /** Every app event, whatever its type. */
  event: AppEvent;
}

/** Why a request failed. `code` is a protocol error code (`bad_payload`, `not_in_room`, `forbidden`,
 * `rate_limited`, `limit_exceeded`, `unavailable`, `internal`, `unknown_type`, ...) or one of the
 * client's own: `timeout` (no answer in time), `disconnected` (the connection dropped before the
 * answer: a send may or may not have been published), `closed` (`close()` was called),
 * `queue_full`, `refused` (the server refused the handshake), `login` (the ticket callback failed),
 * `token` (the token callback failed), `policy` / `app` (closed with 1008 / 4000-4999),
 * `protocol` (closed with 1002, 1003 or 1007). */
export class HubbubError extends Error {
  constructor(code: string, message: string, detail?: Record<string, unknown>);
  readonly code: string;
  /** Extra facts: `room`, `closeCode`, `reason`, `status`. */
  readonly detail: Record<string, unknown>;
}

export interface JoinAck {
  room: string;
  offset: number;
  recovered?: boolean;
}

export interface HistoryAck<M = unknown> {
  room: string;
  /** The room's latest offset. */
  offset: number;
  /** Oldest first. */
  messages: Message<M>[];
}

export interface PresenceAck {
  room: string;
  /** `info`: the public info the application's connect proxy gave the identity, when it gave one. */
  members: { name: string; connections: number; info?: Record<string, unknown> }[];
  /** Present (true) when the server cut a long list. */
  truncated?: boolean;
}

export interface RequestOptions {
  /** Milliseconds to wait for the answer, overriding `HubbubOptions.timeout`. */
  timeout?: number;
}

export class Hubbub {
  constructor(options?: HubbubOptions);
  /** The current state. */
  readonly state: State;
  /** The URL connected to (without credentials). */
  readonly url: string;
  /** The transport of the connection open now, or of the last one: `"websocket"` or `"sse"`; null
   * before any connection opened. */
  readonly transport: "websocket" | "sse" | null;
  /** The rooms this client is in, or will join when connected, and the last offset delivered in each
   * (null before the first join's ack). */
  readonly rooms: ReadonlyMap<string, number | null>;
  /** How many sends are queued, waiting for a connection. */
  readonly queued: number;
  /** Reconnects so far. */
  readonly reconnects: number;

  /** Start connecting (idempotent). Resolves when first `open`; rejects with the error if the client
   * stops before that (`closed`). Reconnecting after a drop is automatic. */
  connect(): Promise<void>;
  /** Close for good: pending and queued requests are rejected with code `closed`. Idempotent. */
  close(code?: number, reason?: string): void;

  /** Listen to an event; returns a function that removes the listener. */
  on<K extends keyof EventMap>(type: K, fn: (event: EventMap[K]) => void): () => void;
  on(type: string, fn: (payload: any) => void): () => void;
  /** Remove a listener. */
  off<K extends keyof EventMap>(type: K, fn: (event: EventMap[K]) => void): void;
  off(type: string, fn: (payload: any) => void): void;

  /** Join a room (remembered: re-joined after every reconnect). While disconnected it resolves when
   * the room is joined after the connection comes back. Rejects with `bad_payload` for a room name
   * the server would refuse (checked here first, see {@link roomNameError}), `forbidden`,
   * `limit_exceeded`; the room is then forgotten.
   *
   * With `since` (an offset the app kept, e.g. in localStorage across a page reload), the messages
   * after it are replayed as `message` events, and `room_reset` is emitted if history no longer
   * reached back to it (the ack then says `recovered: false`). Ignored for a room already joined. */
  join(room: string, options?: { since?: number } & RequestOptions): Promise<JoinAck>;
  /** Leave a room: forgotten at once (no further messages from it). Resolves even when not joined. */
  leave(room: string, options?: RequestOptions): Promise<void>;
  /** Publish a message to a room this client is in; resolves with its offset. While disconnected the
   * send is queued (see `queueLimit`) and written after the rooms are re-joined. A send is at most
   * once: one in flight when the connection drops rejects with `disconnected` and is not resent. */
  send<M = unknown>(room: string, message: M, options?: RequestOptions): Promise<number>;
  /** A room's history: with `since`, the messages after that offset (oldest first); without, the
   * latest `limit` (default 100, 1-1000). May return fewer than asked (the server caps answers by
   * size); page on with `since` = the last offset received. */
  history<M = unknown>(room: string, options?: { since?: number; limit?: number } & RequestOptions): Promise<HistoryAck<M>>;
  /** Who is in a room, on every node. */
  presence(room: string, options?: RequestOptions): Promise<PresenceAck>;
  /** Call the application: an `--app` method registered with `@hub.rpc(method)`, else the server's
   * `--rpc-proxy`. Resolves with the answer's `data`; rejects with a HubbubError whose `code` is
   * `forbidden` (the application refused), `unavailable` (it did not answer in time, or could not),
   * `bad_payload` (no such method, or `method` not a string of 1-128 characters), `rate_limited`,
   * or the client's own (`timeout`, `disconnected`, `closed`). Waits for the connection while
   * disconnected (within the timeout); never resent: a call in flight when the connection drops
   * rejects with `disconnected` (the application may have carried it out). */
  rpc<T = unknown>(method: string, data?: unknown, options?: RequestOptions): Promise<T>;
  /** Any event with an `id` (an app's own events): resolves with the `ack` payload, rejects on
   * `error`. Waits for the connection while disconnected (within the timeout). */
  request<T = any>(type: string, payload?: Record<string, unknown>, options?: RequestOptions): Promise<T>;
}

/** Why a room name would be refused, in words; null when it is valid (1-128 ASCII letters, digits
 * and `_ - . : @`). */
export function roomNameError(room: string): string | null;

/**
 * `POST /login` on the server (same origin by default): resolves with a ticket; rejects with a
 * HubbubError of code `login` whose `detail.status` is the HTTP status (401 wrong name or password,
 * 429 too many failures, 503 busy...). Meant for the `ticket` option:
 * `new Hubbub({ ticket: () => login(user, password) })`.
 */
export function login(username: string, password: string, options?: { url?: string }): Promise<string>;

/** The `exp` claim of a JWT (seconds since 1970), read without verifying it; null if unreadable. */
export function tokenExpiry(token: string): number | null;

/** The SSE stream's URL beside a WebSocket URL: `ws://h/ws` gives `http://h/sse` (`wss:` gives `https:`). */
export function sseUrl(url: string): string;

export default Hubbub;
