// hubbub.js against a scripted WebSocket: the rules that a real server rarely shows on demand
// (repeats after a resume, every close code, the backoff's bounds), checked exactly.

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { Hubbub, HubbubError, roomNameError, tokenExpiry } from "../hubbub.js";
import { collect, mintToken, until } from "./support.js";

/** A WebSocket whose server side is the test: it records what is sent and is told what to answer. */
class ScriptedSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.closed = null;
    ScriptedSocket.all.push(this);
  }
  static get last() {
    return ScriptedSocket.all.at(-1);
  }
  open() {
    this.onopen?.({});
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  receive(event) {
    this.onmessage?.({ data: JSON.stringify(event) });
  }
  /** Answer the last request of `type` with an ack carrying `payload`. */
  ack(type, payload) {
    const request = this.sent.findLast((e) => e.type === type);
    assert.ok(request, `no ${type} was sent`);
    this.receive({ type: "ack", payload, id: request.id });
  }
  drop(code = 1006, reason = "") {
    this.onclose?.({ code, reason });
  }
  close(code = 1000, reason = "") {
    this.closed = { code, reason };
  }
}

const clients = [];
function client(options = {}) {
  const hub = new Hubbub({
    url: "ws://hub.test/ws",
    WebSocket: ScriptedSocket,
    backoff: { base: 10, max: 40, stable: 50 },
    maxRefusals: 0,
    ...options,
  });
  clients.push(hub);
  return hub;
}

afterEach(() => {
  for (const hub of clients.splice(0)) hub.close();
  ScriptedSocket.all = [];
});

async function opened(hub) {
  const ready = hub.connect();
  const ws = await until(() => ScriptedSocket.last, "a dial");
  ws.open();
  await ready;
  return ws;
}

test("messages repeated after a resume are dropped by offset", async () => {
  const hub = client();
  const messages = collect(hub, "message");
  let ws = await opened(hub);
  const joining = hub.join("lobby");
  ws.ack("join_room", { room: "lobby", offset: 5 });
  await joining;
  const msg = (offset) => ({ type: "new_message", payload: { room: "lobby", message: offset, from: "a", sent: "", offset } });
  ws.receive(msg(6));
  ws.receive(msg(6));
  ws.receive(msg(4));
  ws.drop();
  ws = await until(() => ScriptedSocket.all.length === 2 && ScriptedSocket.last, "a reconnect");
  ws.open();
  await until(() => ws.sent.length === 1, "the re-join");
  assert.deepEqual(ws.sent[0].payload, { room: "lobby", since: 6 });
  ws.ack("join_room", { room: "lobby", offset: 7, recovered: true });
  ws.receive(msg(6));
  ws.receive(msg(7));
  assert.deepEqual(
    messages.map((m) => m.offset),
    [6, 7],
  );
  assert.equal(hub.reconnects, 1);
});

test("a resume with recovered: false is told as room_reset, and later messages still come", async () => {
  const hub = client();
  const resets = collect(hub, "room_reset");
  const messages = collect(hub, "message");
  let ws = await opened(hub);
  const joining = hub.join("lobby");
  ws.ack("join_room", { room: "lobby", offset: 10 });
  await joining;
  ws.drop();
  ws = await until(() => ScriptedSocket.all.length === 2 && ScriptedSocket.last, "a reconnect");
  ws.open();
  await until(() => ws.sent.length === 1, "the re-join");
  ws.ack("join_room", { room: "lobby", offset: 2, recovered: false }); // the room started over
  ws.receive({ type: "new_message", payload: { room: "lobby", message: "x", from: "a", sent: "", offset: 3 } });
  assert.deepEqual(resets, [{ room: "lobby", since: 10, offset: 2 }]);
  assert.deepEqual(
    messages.map((m) => m.offset),
    [3],
  );
});

test("sends while disconnected are queued, bounded, and written after the re-join", async () => {
  const hub = client({ queueLimit: 2 });
  const dropped = collect(hub, "dropped");
  let ws = await opened(hub);
  const joining = hub.join("lobby");
  ws.ack("join_room", { room: "lobby", offset: 0 });
  await joining;
  ws.drop();
  const first = hub.send("lobby", "one");
  const second = hub.send("lobby", "two");
  await assert.rejects(hub.send("lobby", "three"), { code: "queue_full" });
  assert.deepEqual(dropped, [{ room: "lobby", message: "three", reason: "queue_full" }]);
  assert.equal(hub.queued, 2);
  ws = await until(() => ScriptedSocket.all.length === 2 && ScriptedSocket.last, "a reconnect");
  ws.open();
  await until(() => ws.sent.length === 1, "the re-join");
  assert.equal(ws.sent[0].type, "join_room"); // nothing else before the room is joined again
  ws.ack("join_room", { room: "lobby", offset: 0, recovered: true });
  await until(() => ws.sent.length === 3, "the queued sends");
  assert.deepEqual(
    ws.sent.slice(1).map((e) => e.payload.message),
    ["one", "two"],
  );
  ws.receive({ type: "ack", payload: { room: "lobby", offset: 1 }, id: ws.sent[1].id });
  ws.receive({ type: "ack", payload: { room: "lobby", offset: 2 }, id: ws.sent[2].id });
  assert.equal(await first, 1);
  assert.equal(await second, 2);
});

test("an error answer rejects with its code; a request in flight rejects on a drop", async () => {
  const hub = client();
  const ws = await opened(hub);
  const asking = hub.request("my_event", { x: 1 });
  const request = ws.sent.at(-1);
  assert.deepEqual(request, { type: "my_event", payload: { x: 1 }, id: request.id });
  ws.receive({ type: "error", payload: { code: "forbidden", message: "no" }, id: request.id });
  const error = await asking.then(
    () => null,
    (e) => e,
  );
  assert.ok(error instanceof HubbubError);
  assert.equal(error.code, "forbidden");
  const waiting = hub.presence("lobby");
  ws.drop();
  await assert.rejects(waiting, { code: "disconnected" });
});

test("a request times out when no answer comes", async () => {
  const hub = client();
  await opened(hub);
  await assert.rejects(hub.history("lobby", { timeout: 50 }), { code: "timeout" });
});

test("close codes: 1001 and 1006 are retried; 1008, 4000-4999 and 1003 stop the client", async () => {
  for (const [code, retried, kind] of [
    [1001, true],
    [1006, true],
    [1013, true],
    [1008, false, "policy"],
    [4001, false, "app"],
    [1003, false, "protocol"],
  ]) {
    const hub = client();
    const states = collect(hub, "state");
    const ws = await opened(hub);
    ws.drop(code, "why");
    const last = states.at(-1);
    if (retried) {
      assert.equal(last.state, "reconnecting", `close ${code}`);
      assert.equal(last.code, code);
    } else {
      assert.equal(last.state, "closed", `close ${code}`);
      assert.equal(last.error.code, kind);
      assert.equal(last.error.detail.closeCode, code);
    }
    hub.close();
  }
});

test("1008 token expired is retried with a new token when a callback gives tokens", async () => {
  let calls = 0;
  const hub = client({ token: () => `t${++calls}` });
  const ws = await opened(hub);
  assert.deepEqual(ws.protocols, ["hubbub", "hubbub.token.t1"]);
  assert.ok(!ws.url.includes("t1"), "the token is never in the URL");
  ws.drop(1008, "token expired");
  const next = await until(() => ScriptedSocket.all.length === 2 && ScriptedSocket.last, "a reconnect");
  assert.deepEqual(next.protocols, ["hubbub", "hubbub.token.t2"]);
});

test("backoff: full jitter under a doubling cap, reset after a stable connection", async () => {
  const hub = client({ backoff: { base: 100, max: 400, stable: 30 } });
  const states = collect(hub, "state");
  const ws = await opened(hub);
  ws.drop();
  for (let n = 2; n <= 5; n++) {
    const sock = await until(() => ScriptedSocket.all.length === n && ScriptedSocket.last, `dial ${n}`);
    sock.drop(); // never opened: a failed dial
  }
  const delays = states.filter((s) => s.state === "reconnecting").map((s) => [s.attempt, s.delay]);
  assert.deepEqual(
    delays.map(([a]) => a),
    [1, 2, 3, 4, 5],
  );
  for (const [attempt, delay] of delays) assert.ok(delay >= 0 && delay <= Math.min(400, 100 * 2 ** (attempt - 1)));
  const sock = await until(() => ScriptedSocket.all.length === 6 && ScriptedSocket.last, "dial 6");
  sock.open();
  await new Promise((resolve) => setTimeout(resolve, 80)); // past `stable`
  sock.drop();
  assert.equal(states.at(-1).attempt, 1);
});

test("joins made while disconnected are sent when the connection opens", async () => {
  const hub = client({ name: "ada" });
  const joining = hub.join("lobby");
  const ready = hub.connect();
  const ws = await until(() => ScriptedSocket.last, "a dial");
  assert.equal(new URL(ws.url).searchParams.get("name"), "ada");
  ws.open();
  await until(() => ws.sent.length === 1, "the join");
  assert.deepEqual(ws.sent[0].payload, { room: "lobby" });
  ws.ack("join_room", { room: "lobby", offset: 3 });
  assert.deepEqual(await joining, { room: "lobby", offset: 3 });
  await ready;
  assert.deepEqual([...hub.rooms], [["lobby", 3]]);
});

test("room names the server would refuse are refused here, in words", async () => {
  assert.equal(roomNameError("lobby-1.a:b@c_d"), null);
  assert.match(roomNameError("bad room"), /not a space/);
  assert.match(roomNameError(""), /needs a name/);
  assert.match(roomNameError("x".repeat(129)), /at most 128/);
  const hub = client();
  await assert.rejects(hub.join("café"), { code: "bad_payload" });
});

test("tokenExpiry reads a JWT's exp", () => {
  const token = mintToken("s".repeat(32), "ada", 60);
  assert.ok(Math.abs(tokenExpiry(token) - (Date.now() / 1000 + 60)) < 5);
  assert.equal(tokenExpiry("not a token"), null);
});

test("a ticket function's network failure is retried; a 4xx HubbubError stops the client", async () => {
  let calls = 0;
  const flaky = client({
    ticket: async () => {
      calls += 1;
      if (calls < 3) throw new TypeError("Failed to fetch");
      return "T1";
    },
  });
  const states = collect(flaky, "state");
  flaky.connect();
  const ws = await until(() => ScriptedSocket.last, "a dial after two failed logins");
  assert.equal(new URL(ws.url).searchParams.get("ticket"), "T1");
  const retried = states.filter((s) => s.state === "reconnecting");
  assert.equal(retried.length, 2);
  assert.match(retried[0].reason, /Failed to fetch/);

  const refused = client({
    ticket: async () => {
      throw new HubbubError("login", "wrong name or password", { status: 401 });
    },
  });
  const error = await refused.connect().then(
    () => null,
    (e) => e,
  );
  assert.equal(error.message, "wrong name or password");
  assert.equal(refused.state, "closed");
});
