// hubbub.js: the browser (and Node 20+) client of a hubbub hub. One ES module, no dependencies.
//
// One logical connection that survives any number of real ones: it reconnects with exponential
// backoff and full jitter, re-joins its rooms with `since` = the last offset it delivered, drops
// repeats by offset, says when a room could not be recovered (`room_reset`), turns requests into
// promises (ack resolves, error rejects, with a timeout), and queues sends while disconnected.
// Where a WebSocket cannot be opened (a proxy or antivirus refusing the `Upgrade`) while the server
// answers HTTP, it falls back by itself to the SSE transport: `GET /sse` down, `POST /sse/send` up,
// with the same API, resume, reconnect and queue (`transport: "auto"`, the default).
// The API, with its doc comments, is hubbub.d.ts; the rules are in clients/js/README.md; the wire
// protocol is docs/protocol.md.

const ROOM = /^[A-Za-z0-9_\-.:@]{1,128}$/;

/** Close codes after which reconnecting cannot help: the client stops (see README: what is retried). */
const FATAL_CLOSE = new Map([
  [1002, "protocol"], // this client broke RFC 6455 framing
  [1003, "protocol"], // a binary message
  [1007, "protocol"], // text that is not UTF-8
  [1008, "policy"], // repeated abuse, or a token that expired (retried when a token callback can give a new one)
]);

/** The client's own event names: a server event of one of these types is emitted only as `event`. */
const CLIENT_EVENTS = new Set(["message", "state", "joined", "room_reset", "dropped", "error", "event"]);

/** Why a request failed, or why the client stopped; `code` is a protocol error code or the client's own. */
export class HubbubError extends Error {
  constructor(code, message, detail = {}) {
    super(message);
    this.name = "HubbubError";
    this.code = code;
    this.detail = detail;
  }
}

/** Why a room name would be refused, in words; null when it is valid. */
export function roomNameError(room) {
  if (typeof room !== "string" || room.length === 0) return "a room needs a name";
  if (room.length > 128) return `a room name is at most 128 characters (this one has ${room.length})`;
  if (!ROOM.test(room)) {
    const bad = [...room].find((c) => !/[A-Za-z0-9_\-.:@]/.test(c));
    const shown = bad === " " ? "a space" : JSON.stringify(bad);
    return `a room name may hold only letters (a-z, A-Z), digits and _ - . : @, not ${shown}`;
  }
  return null;
}

/** The `exp` claim of a JWT, read without verifying it (the server verifies); null if unreadable. */
export function tokenExpiry(token) {
  try {
    const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.exp === "number" ? claims.exp : null;
  } catch {
    return null;
  }
}

const LOGIN_FAILURES = {
  400: "the server did not understand the login",
  401: "wrong name or password",
  403: "this page may not log in to that server (host or origin refused)",
  429: "too many failed logins: wait a minute",
  503: "the server is busy: try again",
};

/** `POST /login`: resolves with a ticket; rejects with code `login` and `detail.status`. */
export async function login(username, password, options = {}) {
  const target = options.url ?? new URL("/login", pageHref("login")).href;
  let response;
  try {
    response = await fetch(target, { method: "POST", body: JSON.stringify({ username, password }) });
  } catch (error) {
    throw new HubbubError("login", `could not reach the server to log in (${error.message})`, { status: 0 });
  }
  if (!response.ok) {
    const words = LOGIN_FAILURES[response.status] ?? `login failed: HTTP ${response.status}`;
    throw new HubbubError("login", words, { status: response.status });
  }
  const body = await response.json();
  return body.ticket;
}

function pageHref(what) {
  const href = globalThis.location?.href;
  if (!href) throw new HubbubError("config", `no ${what} URL given, and there is no page to take one from`);
  return href;
}

function defaultUrl() {
  const page = new URL(pageHref("WebSocket"));
  return `${page.protocol === "https:" ? "wss:" : "ws:"}//${page.host}/ws`;
}

function withQuery(url, key, value) {
  const u = new URL(url);
  u.searchParams.set(key, value);
  return u.href;
}

/** The SSE stream's URL on the same server as the WebSocket URL: `ws://h/ws` gives `http://h/sse`. */
export function sseUrl(url) {
  const u = new URL(url);
  u.protocol = u.protocol === "wss:" ? "https:" : u.protocol === "ws:" ? "http:" : u.protocol;
  u.pathname = u.pathname.replace(/\/ws$/, "") + "/sse";
  return u.href;
}

/** The transports that worked, by WebSocket URL, for the page's life: a second client (or a
 * reconnect) on a network that refuses WebSockets does not try one again. */
const WORKED = new Map();

const TRANSPORTS = new Set(["auto", "websocket", "sse"]);

/** The most envelopes in one `POST /sse/send` (the server's batch cap). */
const BATCH = 32;

/**
 * The SSE transport, shaped like the part of a WebSocket that Hubbub uses (`onopen`, `onmessage`,
 * `onclose`, `send`, `close`), so that everything above it (re-joins with `since`, acks, the queue,
 * backoff) is the same code for both transports.
 *
 * Down: `GET /sse` read with `fetch` as a stream (not `EventSource`: Hubbub reconnects by itself,
 * with its own backoff and re-joins, sees the HTTP status of a refusal, and runs in Node 20 too).
 * The `hello` event names the session and opens the socket; `ack`/`error` events carry whole
 * envelopes; every other event is turned into the envelope `{type, payload}` a WebSocket would
 * carry. Up: what `send()` is given is posted in order, batched (at most 32 envelopes a request),
 * one request at a time, with `X-Hubbub-Session`.
 */
class SseSocket {
  constructor(url, sendUrl, fetchImpl, resumed = new Set()) {
    this.url = url;
    this._sendUrl = sendUrl;
    this._fetch = fetchImpl;
    this._abort = new AbortController();
    this._resumed = resumed; // rooms the URL resumes (`last_event_id`): their re-joins are answered by `hello`
    this._joined = new Map(); // room -> {offset, recovered}, from `hello`, until its re-join asks for it
    this._session = null;
    this._outbox = [];
    this._posting = false;
    this._ended = false;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this._read();
  }

  /** Open the stream and read it until it ends; any ending is one `onclose` (code 1006). */
  async _read() {
    let response;
    try {
      response = await this._fetch(this.url, {
        headers: { Accept: "text/event-stream" },
        cache: "no-store",
        credentials: "include", // cookies to an allowed origin too, as a WebSocket sends them
        signal: this._abort.signal,
      });
    } catch (error) {
      // the URL without its query: a ticket or token is never put in a reason (shown, logged)
      return this._end(1006, `could not reach ${this.url.split("?")[0]}: ${error.message}`);
    }
    if (response.status !== 200 || !response.body) {
      let text = "";
      try {
        text = (await response.text()).trim().slice(0, 200);
      } catch {
        // the reason is a courtesy
      }
      return this._end(1006, `HTTP ${response.status}${text ? `: ${text}` : ""}`, response.status);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let fields = { event: "", data: [] };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.search(/\r\n|\r|\n/)) >= 0) {
          if (buffer[cut] === "\r" && cut === buffer.length - 1) break; // a \r\n split between chunks
          const line = buffer.slice(0, cut);
          buffer = buffer.slice(cut + (buffer.startsWith("\r\n", cut) ? 2 : 1));
          if (line === "") {
            if (fields.data.length) this._dispatch(fields.event || "message", fields.data.join("\n"));
            fields = { event: "", data: [] };
            if (this._ended) return;
            continue;
          }
          if (line.startsWith(":")) continue; // a ping
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (name === "event") fields.event = value;
          else if (name === "data") fields.data.push(value);
          // `id:` and `retry:` are for EventSource; Hubbub resumes by the offsets it delivered
        }
      }
      this._end(1006, "the server ended the stream");
    } catch (error) {
      this._end(1006, `the stream broke: ${error.message}`);
    }
  }

  _dispatch(event, data) {
    if (event === "hello") {
      try {
        const hello = JSON.parse(data);
        this._session = hello.session;
        for (const [room, joined] of Object.entries(hello.rooms ?? {})) {
          if (this._resumed.has(room)) this._joined.set(room, joined);
        }
      } catch {
        return this._end(1006, "a hello that is not JSON");
      }
      this.onopen?.({});
      this._joined.clear(); // the re-joins were sent as it opened; a room not asked for was left meanwhile
      return;
    }
    if (this._session === null) return;
    // ack and error carry their whole envelope (the id matches the request); the rest, the payload
    const text = event === "ack" || event === "error" ? data : `{"type":${JSON.stringify(event)},"payload":${data}}`;
    this.onmessage?.({ data: text });
  }

  send(text) {
    if (this._ended || this._session === null) throw new Error("the SSE stream is not open");
    if (this._joined.size && this._answeredByHello(text)) return;
    this._outbox.push(text);
    if (!this._posting) this._post();
  }

  /** Post what waits, in order, one request at a time. A batch answered 429 (refused whole,
   * nothing done) is posted again a second later; one answered 413 is posted again one envelope a
   * request, and an envelope refused alone fails with `limit_exceeded` (a WebSocket would close). */
  async _post() {
    this._posting = true;
    let singles = 0; // envelopes to post one by one, after a batch was too large
    try {
      await Promise.resolve(); // what is sent in the same tick goes in one request
      while (this._outbox.length && !this._ended) {
        const batch = this._outbox.slice(0, singles > 0 ? 1 : BATCH);
        const body = batch.length === 1 ? batch[0] : `[${batch.join(",")}]`;
        let response;
        try {
          response = await this._fetch(this._sendUrl, {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-Hubbub-Session": this._session },
            body,
            credentials: "include", // cookies to an allowed origin too, as a WebSocket sends them
            signal: this._abort.signal,
          });
        } catch (error) {
          return this._end(1006, `could not post to ${this._sendUrl}: ${error.message}`);
        }
        response.body?.cancel().catch(() => {}); // 202 has none; a refusal's words are not needed
        if (response.status === 429) {
          await new Promise((resolve) => setTimeout(resolve, 1000));
          continue; // flooded: the same batch again, a second later
        }
        if (response.status === 413 && batch.length > 1) {
          singles = batch.length;
          continue;
        }
        this._outbox.splice(0, batch.length);
        singles = Math.max(0, singles - 1);
        if (response.status === 413) {
          this._refuse(batch, "limit_exceeded", "the message is larger than the server accepts (--max-message-size)");
        } else if (response.status === 404) {
          return this._end(1006, "the server no longer knows this stream");
        } else if (response.status < 200 || response.status >= 300) {
          return this._end(1006, `POST ${this._sendUrl}: HTTP ${response.status}`);
        }
      }
    } finally {
      this._posting = false;
    }
  }

  /** The re-join of a room the stream's URL already resumed (the server joined it, replayed what
   * was missed after `hello`, and said the room's offset and `recovered` in `hello`): answered here
   * with the ack the server would give, at once, so it is read before the replay, as on a WebSocket. */
  _answeredByHello(text) {
    let envelope;
    try {
      envelope = JSON.parse(text);
    } catch {
      return false;
    }
    const room = envelope?.payload?.room;
    const joined = this._joined.get(room);
    if (envelope?.type !== "join_room" || joined === undefined || envelope.payload.since === undefined) return false;
    this._joined.delete(room);
    const payload = { room, offset: joined.offset, recovered: joined.recovered !== false };
    this.onmessage?.({ data: JSON.stringify({ type: "ack", payload, id: envelope.id }) });
    return true;
  }

  /** Answer every request of a batch the server refused whole with an error, as the server would. */
  _refuse(batch, code, message) {
    for (const text of batch) {
      let id;
      try {
        id = JSON.parse(text).id;
      } catch {
        continue;
      }
      if (id !== undefined) this.onmessage?.({ data: JSON.stringify({ type: "error", payload: { code, message }, id }) });
    }
  }

  close(code = 1000, reason = "") {
    this._end(code, reason);
  }

  _end(code, reason, status = 0) {
    if (this._ended) return;
    this._ended = true;
    this._abort.abort();
    const onclose = this.onclose;
    setTimeout(() => onclose?.({ code, reason, status }), 0); // after the caller, as a WebSocket's close
  }
}

function healthUrl(url) {
  const u = new URL(url);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.pathname = u.pathname.replace(/\/ws$/, "") + "/healthz";
  u.search = "";
  return u.href;
}

/** Report a listener's exception without breaking the client. */
function report(error) {
  setTimeout(() => {
    throw error;
  });
}

const MAX_TIMER = 2 ** 31 - 1;

export class Hubbub {
  constructor(options = {}) {
    this._url = options.url ?? defaultUrl();
    new URL(this._url); // a malformed URL fails here, not at the first dial
    this._name = options.name ?? null;
    this._ticket = options.ticket ?? null;
    this._token = options.token ?? null;
    this._refreshBefore = (options.refreshBefore ?? 30) * 1000;
    this._transport = options.transport ?? "auto";
    if (!TRANSPORTS.has(this._transport)) {
      throw new HubbubError("config", `transport is "auto", "websocket" or "sse", not ${JSON.stringify(this._transport)}`);
    }
    this._sseUrl = options.sseUrl ?? sseUrl(this._url);
    this._sendUrl = new URL(new URL(this._sseUrl).pathname.replace(/\/?$/, "/send"), this._sseUrl).href;
    this._fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (this._transport === "auto" && typeof this._WebSocket !== "function") this._transport = "sse"; // Node 20 without the flag
    if (this._transport !== "websocket" && typeof this._fetch !== "function") {
      throw new HubbubError("config", "no fetch: pass options.fetch, or transport: \"websocket\"");
    }
    if (this._transport !== "sse" && typeof this._WebSocket !== "function") {
      throw new HubbubError("config", "no WebSocket class: pass options.WebSocket (Node 20: --experimental-websocket)");
    }
    const backoff = options.backoff ?? {};
    this._base = backoff.base ?? 250;
    this._max = backoff.max ?? 30000;
    this._stable = backoff.stable ?? 10000;
    this._timeout = options.timeout ?? 10000;
    this._queueLimit = options.queueLimit ?? 100;
    this._maxRefusals = options.maxRefusals ?? 3;
    this._connectTimeout = options.connectTimeout ?? 10000;

    this._state = "idle";
    this._ws = null;
    this._using = null;
    this._rooms = new Map(); // room -> last offset delivered (null before the first ack)
    this._joinWaiters = new Map(); // room -> [{resolve, reject}] for joins made while not open
    this._pending = new Map(); // id -> {resolve, reject, timer, onAck}
    this._queue = []; // requests made while not open, in order: {type, payload, send, resolve, reject, timer}
    this._listeners = new Map();
    this._ids = 0;
    this._attempt = 0;
    this._refusals = 0;
    this._opened = 0;
    this._timers = { dial: null, stable: null, refresh: null, handshake: null };
    this._ready = null;
    this._online = () => this._state === "reconnecting" && this._dialNow();
  }

  get state() {
    return this._state;
  }
  get url() {
    return this._url;
  }
  /** The transport of the connection open now ("websocket" or "sse"), or the last one; null before. */
  get transport() {
    return this._using ?? null;
  }
  get rooms() {
    return new Map(this._rooms);
  }
  get queued() {
    return this._queue.filter((q) => q.send).length;
  }
  get reconnects() {
    return Math.max(0, this._opened - 1);
  }

  // ---- events ------------------------------------------------------------------------------

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  _emit(type, value) {
    for (const fn of [...(this._listeners.get(type) ?? [])]) {
      try {
        fn(value);
      } catch (error) {
        report(error);
      }
    }
  }

  _setState(state, extra = {}) {
    const previous = this._state;
    this._state = state;
    this._emit("state", { state, previous, attempt: this._attempt, ...extra });
  }

  // ---- the connection, kept alive ----------------------------------------------------------

  connect() {
    if (this._ready) return this._ready.promise;
    if (this._state === "closed") return Promise.reject(new HubbubError("closed", "the client was closed"));
    let resolve, reject;
    const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    promise.catch(() => {}); // the caller may not wait for it; the error is also emitted
    this._ready = { promise, resolve, reject };
    globalThis.addEventListener?.("online", this._online);
    this._dial();
    return promise;
  }

  close(code = 1000, reason = "") {
    if (this._state === "closed") return;
    const ws = this._ws;
    this._stop(new HubbubError("closed", "the client was closed"), false);
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
    }
  }

  /** Give up for good: reject everything waiting, and say why (unless `close()` was called). */
  _stop(error, fatal, extra = {}) {
    const ws = this._ws;
    this._ws = null;
    for (const timer of Object.values(this._timers)) clearTimeout(timer);
    globalThis.removeEventListener?.("online", this._online);
    this._rejectAll(error, true);
    this._setState("closed", fatal ? { error, ...extra } : extra);
    if (fatal) {
      this._emit("error", error);
      if (ws) ws.close();
    }
    this._ready?.reject(error);
  }

  _rejectAll(error, queuedToo) {
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      this._pending.delete(id);
      p.reject(error);
    }
    if (!queuedToo) return;
    for (const q of this._queue.splice(0)) {
      clearTimeout(q.timer);
      q.reject(error);
    }
    for (const waiters of this._joinWaiters.values()) for (const w of waiters) w.reject(error);
    this._joinWaiters.clear();
  }

  _dialNow() {
    clearTimeout(this._timers.dial);
    this._dial();
  }

  async _dial() {
    this._setState("connecting");
    let url = this._url;
    let protocols;
    try {
      if (this._ticket) url = withQuery(url, "ticket", await this._ticket());
    } catch (error) {
      return this._credentialFailed(error, "login", "ticket");
    }
    try {
      if (this._token) {
        const token = typeof this._token === "function" ? await this._token() : this._token;
        protocols = ["hubbub", `hubbub.token.${token}`];
        this._currentToken = token;
      }
    } catch (error) {
      return this._credentialFailed(error, "token", "token");
    }
    if (this._name !== null) url = withQuery(url, "name", this._name);
    if (this._state !== "connecting") return; // closed while the callbacks ran
    const remembered = WORKED.get(this._url);
    if (this._transport === "sse" || (this._transport === "auto" && remembered === "sse")) {
      return this._dialSse(url, false);
    }
    let ws;
    try {
      ws = protocols ? new this._WebSocket(url, protocols) : new this._WebSocket(url);
    } catch (error) {
      return this._stop(new HubbubError("config", `cannot open ${this._url}: ${error.message}`), true);
    }
    this._ws = ws;
    let opened = false;
    // Ended once, by whichever comes first: its close event; an error before it opened (Node 20's
    // WebSocket may fire no close then); or no handshake within `connectTimeout` (it may fire nothing).
    const ended = (code, reason) => {
      if (this._ws !== ws) return; // already ended
      clearTimeout(this._timers.handshake);
      if (code === 1006 && !opened) this._abandon(ws);
      // never opened, on a network not yet known to take WebSockets: try SSE before judging
      if (!opened && code === 1006 && this._transport === "auto" && remembered !== "websocket") {
        this._ws = null;
        return this._dialSse(url, true);
      }
      this._onClose(code, reason, opened);
    };
    this._timers.handshake = setTimeout(() => ended(1006, "no handshake in time"), this._connectTimeout);
    ws.onopen = () => {
      if (this._ws !== ws) return;
      opened = true;
      clearTimeout(this._timers.handshake);
      this._using = "websocket";
      if (this._transport === "auto") WORKED.set(this._url, "websocket");
      this._onOpen(ws);
    };
    ws.onmessage = (event) => {
      if (this._ws === ws) this._onText(event.data);
    };
    ws.onclose = (event) => ended(event.code, event.reason);
    ws.onerror = () => {
      if (!opened) setTimeout(() => ended(1006, ""), 0); // after a close event, if one comes at once
    };
  }

  /** Open the SSE transport with the credentials as query parameters (the WebSocket's `url` has
   * the ticket and name; a token goes as `?token=`, cookies go by themselves). A ticket is good for
   * one connection, so a fallback after a WebSocket that may have used it asks for a new one. */
  async _dialSse(wsUrl, fallback) {
    let url = this._sseUrl;
    const query = new URL(wsUrl).searchParams;
    for (const key of ["name", "ticket"]) if (query.has(key)) url = withQuery(url, key, query.get(key));
    try {
      if (fallback && this._ticket) url = withQuery(url, "ticket", await this._ticket());
    } catch (error) {
      return this._credentialFailed(error, "login", "ticket");
    }
    if (this._currentToken && this._token) url = withQuery(url, "token", this._currentToken);
    if (this._state !== "connecting") return; // closed meanwhile
    // Rooms with an offset are resumed by the stream itself (`rooms` and `last_event_id`, one round
    // trip less than re-joining over POST), unless that was refused last time (a room no longer
    // allowed refuses the whole stream; re-joined over POST, it is forgotten alone). A URL is kept
    // well below the server's 16 KiB request head; the rooms past that are re-joined over POST.
    const resumed = new Set();
    if (!this._sseRoomsRefused) {
      const ids = [];
      for (const [room, since] of this._rooms) {
        if (since === null || url.length + 2 * (ids.join(",").length + room.length) > 4000) continue;
        resumed.add(room);
        ids.push(`${room}=${since}`);
      }
      if (ids.length) {
        url = withQuery(url, "rooms", [...resumed].join(","));
        url = withQuery(url, "last_event_id", ids.join(","));
      }
    }
    const sse = new SseSocket(url, this._sendUrl, this._fetch, resumed);
    this._ws = sse;
    let opened = false;
    const ended = (code, reason, status) => {
      if (this._ws !== sse) return;
      clearTimeout(this._timers.handshake);
      if (!opened) sse.onopen = sse.onmessage = sse.onclose = null;
      if (!opened) sse.close();
      if (!opened && resumed.size && [400, 403, 422].includes(status)) this._sseRoomsRefused = true;
      this._onClose(code, reason, opened);
    };
    clearTimeout(this._timers.handshake);
    this._timers.handshake = setTimeout(() => ended(1006, "no SSE hello in time"), this._connectTimeout);
    sse.onopen = () => {
      if (this._ws !== sse) return;
      opened = true;
      clearTimeout(this._timers.handshake);
      this._sseRoomsRefused = false;
      this._using = "sse";
      if (this._transport === "auto") WORKED.set(this._url, "sse");
      this._onOpen(sse);
      for (const room of resumed) {
        // left while the stream was opening: leave on the server too, or its messages would keep coming
        if (!this._rooms.has(room)) this._write(sse, "leave_room", { room }, this._timeout).catch(() => {});
      }
    };
    sse.onmessage = (event) => {
      if (this._ws === sse) this._onText(event.data);
    };
    sse.onclose = (event) => ended(event.code, event.reason, event.status);
  }

  /** A ticket or token callback threw. An HTTP answer of 4xx (not 429) stops the client: a wrong
   * password or a refused login will not get better (`login()` throws so). Anything else (the
   * network, 429, 503, an app's own error) is retried with backoff, the reason in the state event. */
  _credentialFailed(error, code, what) {
    if (this._state !== "connecting") return; // closed while the callback ran
    const status = error?.detail?.status;
    const failure =
      error instanceof HubbubError ? error : new HubbubError(code, `could not get a ${what}: ${error?.message ?? error}`);
    if (status >= 400 && status < 500 && status !== 429) return this._stop(failure, true);
    this._retry(undefined, failure.message);
  }

  /** Let go of a socket that never opened, so it can fire nothing more at us. */
  _abandon(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close();
    } catch {
      // closing a socket that is still connecting may throw; it is let go either way
    }
  }

  async _onOpen(ws) {
    this._refusals = 0;
    this._opened += 1;
    this._timers.stable = setTimeout(() => (this._attempt = 0), this._stable);
    if (typeof this._token === "function") this._scheduleRefresh(this._currentToken);
    await this._rejoin(ws);
    if (this._ws !== ws) return; // dropped during the re-join: the close handler took over
    this._setState("open");
    this._ready?.resolve();
    for (const q of this._queue.splice(0)) {
      clearTimeout(q.timer);
      this._write(ws, q.type, q.payload, q.timeout).then(q.resolve, q.reject);
    }
  }

  /** Join every remembered room again: with `since` where an offset was delivered. */
  async _rejoin(ws) {
    const done = new Set();
    for (;;) {
      // rooms joined while this pass ran (join() before `open`) are joined in the next one
      const rooms = [...this._rooms].filter(([room]) => !done.has(room));
      if (rooms.length === 0 || this._ws !== ws) return;
      for (const [room] of rooms) done.add(room);
      await this._rejoinPass(ws, rooms);
    }
  }

  async _rejoinPass(ws, rooms) {
    const results = await Promise.allSettled(
      rooms.map(([room, since]) =>
        {
          // a re-join, unless the app's own join() (made while not open) is waiting for this one
          const rejoin = since !== null && !this._joinWaiters.has(room);
          const payload = since === null ? { room } : { room, since };
          return this._write(ws, "join_room", payload, this._timeout, (ack) => this._joinAcked(room, ack, since, rejoin));
        },
      ),
    );
    results.forEach((result, i) => {
      if (result.status === "fulfilled") return;
      const error = result.reason;
      const room = rooms[i][0];
      if (error.code === "timeout") {
        if (this._ws === ws) ws.close(); // a stuck connection: dial again
      } else if (error.code !== "disconnected" && error.code !== "closed") {
        this._rooms.delete(room); // refused now (forbidden, limit_exceeded): forgotten, the app told
        this._settleJoin(room, null, error);
        this._emit("error", new HubbubError(error.code, `could not re-join ${room}: ${error.message}`, { room }));
      }
    });
  }

  /** A join's ack, read before any event after it: set the room's offset, detect a lost stretch. */
  _joinAcked(room, ack, since, rejoin) {
    if (!this._rooms.has(room)) {
      // left while the join was on its way: leave on the server too, or its messages would keep coming
      if (this._ws) this._write(this._ws, "leave_room", { room }, this._timeout).catch(() => {});
      return;
    }
    const last = this._rooms.get(room);
    const resumed = since !== null;
    if (last === null) this._rooms.set(room, ack.offset);
    else if (resumed && ack.recovered === false) {
      if (ack.offset < last) this._rooms.set(room, ack.offset); // the room started over
      this._emit("room_reset", { room, since: last, offset: ack.offset });
    }
    const joined = { room, offset: ack.offset, rejoin };
    if (resumed) joined.recovered = ack.recovered !== false;
    this._emit("joined", joined);
    this._settleJoin(room, ack, null);
  }

  _settleJoin(room, ack, error) {
    const waiters = this._joinWaiters.get(room);
    if (!waiters) return;
    this._joinWaiters.delete(room);
    for (const w of waiters) (error ? w.reject(error) : w.resolve(ack));
  }

  _onClose(code, reason, opened) {
    this._ws = null;
    clearTimeout(this._timers.stable);
    clearTimeout(this._timers.refresh);
    this._rejectAll(new HubbubError("disconnected", "the connection dropped before the answer came"), false);
    const kind = FATAL_CLOSE.get(code) ?? (code >= 4000 && code <= 4999 ? "app" : null);
    const expired = code === 1008 && /token expired/.test(reason) && typeof this._token === "function";
    if (kind && !expired) {
      const words = reason ? `: ${reason}` : "";
      return this._stop(new HubbubError(kind, `the server closed the connection with ${code}${words}`, {
        closeCode: code,
        reason,
      }), true, { code, reason });
    }
    if (!opened && this._maxRefusals > 0 && typeof fetch === "function") return this._judgeRefusal(code, reason);
    this._retry(code, reason);
  }

  /** A dial that never opened: a browser cannot see the HTTP status. If the server's `/healthz`
   * answers 200, the server is up and refused this handshake (credentials, origin, name). */
  async _judgeRefusal(code, reason) {
    let up = false;
    try {
      const response = await fetch(healthUrl(this._url), { cache: "no-store" });
      up = response.status === 200;
      response.body?.cancel().catch(() => {}); // not read: let the connection go (Node keeps it otherwise)
    } catch {
      up = false; // down, or another origin that does not allow us to read it: unknown, retried
    }
    if (this._state !== "connecting") return; // closed meanwhile
    this._refusals = up ? this._refusals + 1 : 0;
    if (this._refusals >= this._maxRefusals) {
      const why = this._ticket || this._token ? "the ticket or token" : "the origin or the name";
      return this._stop(new HubbubError("refused", `the server is up but refused the connection ${this._refusals} times: check ${why}`, {
        closeCode: code,
      }), true, { code, reason });
    }
    this._retry(code, reason);
  }

  _retry(code, reason) {
    this._attempt += 1;
    const delay = Math.random() * Math.min(this._max, this._base * 2 ** (this._attempt - 1));
    this._setState("reconnecting", { delay, code, reason });
    this._timers.dial = setTimeout(() => this._dial(), delay);
  }

  _scheduleRefresh(token) {
    clearTimeout(this._timers.refresh);
    const exp = tokenExpiry(token);
    if (exp === null) return;
    const left = exp * 1000 - Date.now();
    const wait = Math.max(0, left - Math.min(this._refreshBefore, left / 2));
    this._timers.refresh = setTimeout(() => this._refresh(exp), Math.min(wait, MAX_TIMER));
  }

  /** Send `refresh` with a new token; on failure, try again shortly while the old one lasts. */
  async _refresh(exp) {
    const ws = this._ws;
    if (!ws) return;
    try {
      const token = await this._token();
      await this._write(ws, "refresh", { token }, this._timeout);
      this._currentToken = token;
      if (this._ws === ws) this._scheduleRefresh(token);
    } catch (error) {
      if (this._ws !== ws || error.code === "disconnected" || error.code === "closed") return;
      this._emit("error", new HubbubError(error.code ?? "token", `token refresh failed: ${error.message}`));
      const left = exp * 1000 - Date.now();
      if (left > 0) this._timers.refresh = setTimeout(() => this._refresh(exp), Math.max(1000, Math.min(5000, left / 2)));
    }
  }

  // ---- events from the server ----------------------------------------------------------------

  _onText(text) {
    let event;
    try {
      event = JSON.parse(text);
    } catch {
      return; // not from a hubbub server
    }
    if (!event || typeof event !== "object") return;
    const { type, id } = event;
    const payload = event.payload ?? {};
    if ((type === "ack" || type === "error") && id !== undefined && id !== null) {
      const pending = this._pending.get(String(id));
      if (!pending) return; // the answer to a request that timed out
      this._pending.delete(String(id));
      clearTimeout(pending.timer);
      if (type === "ack") {
        pending.onAck?.(payload); // acted on now, before the events that follow it in the stream
        pending.resolve(payload);
      } else {
        pending.reject(new HubbubError(payload.code ?? "internal", payload.message ?? "", { ...pending.detail }));
      }
      return;
    }
    if (type === "error") {
      this._emit("error", new HubbubError(payload.code ?? "internal", payload.message ?? ""));
      return;
    }
    if (type === "new_message") {
      const last = this._rooms.get(payload.room);
      if (last === undefined) return; // a room we left
      if (last !== null && payload.offset <= last) return; // a repeat after a resume
      this._rooms.set(payload.room, payload.offset);
      this._emit("message", payload);
      return;
    }
    if (typeof type !== "string" || type === "ack") return;
    this._emit("event", { type, payload });
    if (!CLIENT_EVENTS.has(type)) this._emit(type, payload); // never mistaken for the client's own
  }

  // ---- requests ----------------------------------------------------------------------------

  /** Write a request on `ws`; the promise settles on its ack or error, a timeout, or a drop. */
  _write(ws, type, payload, timeout, onAck, detail = {}) {
    const id = `js${++this._ids}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new HubbubError("timeout", `no answer to ${type} within ${timeout} ms`, detail));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer, onAck, detail });
      try {
        ws.send(JSON.stringify({ type, payload, id }));
      } catch (error) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new HubbubError("disconnected", `could not send: ${error.message}`, detail));
      }
    });
  }

  /** A request now if open, else queued until open (sends bounded by `queueLimit`, others by their timeout). */
  _call(type, payload, options = {}, send = false) {
    const timeout = options.timeout ?? this._timeout;
    if (this._state === "closed") return Promise.reject(new HubbubError("closed", "the client was closed"));
    if (this._state === "open" && this._ws) return this._write(this._ws, type, payload, timeout);
    if (send && this.queued >= this._queueLimit) {
      this._emit("dropped", { room: payload.room, message: payload.message, reason: "queue_full" });
      return Promise.reject(
        new HubbubError("queue_full", `${this._queueLimit} messages are already waiting for the connection`, {
          room: payload.room,
        }),
      );
    }
    return new Promise((resolve, reject) => {
      const entry = { type, payload, send, timeout, resolve, reject, timer: null };
      if (!send) {
        entry.timer = setTimeout(() => {
          this._queue.splice(this._queue.indexOf(entry), 1);
          reject(new HubbubError("timeout", `not connected within ${timeout} ms`));
        }, timeout);
      }
      this._queue.push(entry);
    });
  }

  join(room, options = {}) {
    const invalid = roomNameError(room);
    if (invalid) return Promise.reject(new HubbubError("bad_payload", invalid, { room }));
    if (this._state === "closed") return Promise.reject(new HubbubError("closed", "the client was closed"));
    const known = this._rooms.has(room);
    const since = known ? null : (options.since ?? null); // a room already joined gets no replay
    if (!known) this._rooms.set(room, since);
    const wait = () =>
      new Promise((resolve, reject) => {
        if (!this._joinWaiters.has(room)) this._joinWaiters.set(room, []);
        this._joinWaiters.get(room).push({ resolve, reject });
      });
    if (this._state !== "open" || !this._ws) return wait(); // joined with the others when the connection opens
    const timeout = options.timeout ?? this._timeout;
    const onAck = (ack) => this._joinAcked(room, ack, since, false);
    const payload = since === null ? { room } : { room, since };
    return this._write(this._ws, "join_room", payload, timeout, onAck, { room }).catch((error) => {
      if (error.code === "disconnected") return wait(); // joined again after the reconnect
      if (error.code !== "timeout" && !known) this._rooms.delete(room);
      throw error;
    });
  }

  async leave(room, options = {}) {
    const had = this._rooms.delete(room);
    this._settleJoin(room, null, new HubbubError("left", `left ${room} before it was joined`, { room }));
    if (!had || this._state !== "open" || !this._ws) return;
    try {
      await this._write(this._ws, "leave_room", { room }, options.timeout ?? this._timeout, null, { room });
    } catch (error) {
      if (error.code === "not_in_room" || error.code === "disconnected") return; // not in it either way
      throw error;
    }
  }

  async send(room, message, options = {}) {
    const invalid = roomNameError(room);
    if (invalid) throw new HubbubError("bad_payload", invalid, { room });
    const ack = await this._call("send_message", { room, message }, options, true);
    return ack.offset;
  }

  history(room, options = {}) {
    const payload = { room };
    if (options.since !== undefined && options.since !== null) payload.since = options.since;
    if (options.limit !== undefined && options.limit !== null) payload.limit = options.limit;
    return this._call("get_history", payload, options);
  }

  presence(room, options = {}) {
    return this._call("get_presence", { room }, options);
  }

  /** Call the application's `method` (an `--app` method or the `--rpc-proxy`): the answer's data. */
  async rpc(method, data = null, options = {}) {
    if (typeof method !== "string" || method.length < 1 || method.length > 128) {
      throw new HubbubError("bad_payload", "method must be a string of 1 to 128 characters", { method });
    }
    const ack = await this._call("rpc", { method, data: data === undefined ? null : data }, options);
    return ack.data;
  }

  request(type, payload = {}, options = {}) {
    return this._call(type, payload, options);
  }
}

export default Hubbub;
