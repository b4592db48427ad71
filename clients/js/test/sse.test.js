// hubbub.js over the SSE transport, against a real `hubbub serve`: through a proxy that refuses the
// WebSocket `Upgrade` (as corporate proxies and some antivirus software do), `transport: "auto"`
// falls back to `GET /sse` down and `POST /sse/send` up, with the same API, resume, queue and
// credentials; `transport: "sse"` goes there at once; `transport: "websocket"` never does.

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { Hubbub, sseUrl } from "../hubbub.js";
import { collect, FAST, mintToken, startProxy, startServer, until } from "./support.js";

const opened = [];
function client(options) {
  const hub = new Hubbub({ backoff: FAST, connectTimeout: 3000, ...options });
  opened.push(hub);
  return hub;
}
function closeClients() {
  for (const hub of opened.splice(0)) hub.close();
}

test("the SSE URL is /sse beside /ws, http for ws and https for wss", () => {
  assert.equal(sseUrl("ws://h:1/ws"), "http://h:1/sse");
  assert.equal(sseUrl("wss://h/hub/ws?x=1"), "https://h/hub/sse?x=1");
  assert.throws(() => new Hubbub({ url: "ws://h/ws", transport: "carrier-pigeon" }), /transport is "auto"/);
});

describe("behind a proxy that refuses WebSockets", () => {
  let server;
  let proxy;
  before(async () => {
    server = await startServer(["--rate-limit", "0", "--ping-interval", "2"]);
    proxy = await startProxy(server.port, { noUpgrade: true });
  });
  after(async () => {
    closeClients();
    await proxy.close();
    await server.stop();
  });

  test("auto falls back to SSE: join, send with acks, errors, presence, history, member events", async () => {
    const ada = client({ url: proxy.url, name: "ada" });
    const bob = client({ url: server.url, name: "bob", transport: "websocket" });
    const states = collect(ada, "state");
    const started = Date.now();
    await ada.connect();
    const took = Date.now() - started;
    assert.equal(ada.transport, "sse");
    assert.ok(proxy.upgradesRefused >= 1, "the WebSocket was tried first");
    assert.equal(states.filter((s) => s.state === "connecting").length, 1, "one dial: the fallback is part of it");
    console.log(`# hubbub.js connected over SSE after a refused WebSocket in ${took} ms`);
    await bob.connect();
    const toAda = collect(ada, "message");
    const joinedAda = collect(ada, "member_joined");
    assert.deepEqual(await ada.join("lobby"), { room: "lobby", offset: 0 });
    await bob.join("lobby");
    await until(() => joinedAda.some((m) => m.name === "bob"), "member_joined bob over SSE");
    assert.equal(await ada.send("lobby", { text: "from ada" }), 1);
    await bob.send("lobby", "from bob");
    await until(() => toAda.length === 2, "both messages over SSE");
    assert.deepEqual(
      toAda.map((m) => [m.offset, m.from]),
      [
        [1, "ada"],
        [2, "bob"],
      ],
    );
    const presence = await ada.presence("lobby");
    assert.deepEqual(presence.members.map((m) => m.name).sort(), ["ada", "bob"]);
    const history = await ada.history("lobby", { limit: 10 });
    assert.deepEqual(
      history.messages.map((m) => m.offset),
      [1, 2],
    );
    await assert.rejects(ada.send("nowhere", "x"), { code: "not_in_room" });
    // many requests in one tick go up in one POST, answered in order
    const offsets = await Promise.all([1, 2, 3, 4, 5].map((k) => ada.send("lobby", k)));
    assert.deepEqual(offsets, [3, 4, 5, 6, 7]);
    await ada.leave("lobby");
    await bob.send("lobby", "after ada left");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(toAda.filter((m) => m.message === "after ada left").length, 0, "a left room's messages stop");
  });

  test("a cut stream is resumed by the stream's own URL: rooms and last_event_id, missed messages once", async () => {
    const requests = [];
    const recording = (url, init = {}) => {
      requests.push({ method: init.method ?? "GET", url: String(url), body: init.body });
      return fetch(url, init);
    };
    const cy = client({ url: proxy.url, name: "cy", fetch: recording });
    const dee = client({ url: server.url, name: "dee", transport: "websocket" });
    await Promise.all([cy.connect(), dee.connect()]);
    assert.equal(cy.transport, "sse");
    const got = collect(cy, "message");
    const joined = collect(cy, "joined");
    await cy.join("resume");
    await dee.join("resume");
    await dee.send("resume", "before");
    await until(() => got.length === 1, "the first message");
    proxy.refuse(true);
    proxy.cut();
    await until(() => cy.state !== "open", "the client to see the cut");
    for (const k of [1, 2, 3]) await dee.send("resume", `missed ${k}`);
    proxy.refuse(false);
    await until(() => got.length === 4 && cy.state === "open", "the missed messages after the resume", 20000);
    assert.deepEqual(
      got.map((m) => m.message),
      ["before", "missed 1", "missed 2", "missed 3"],
    );
    assert.ok(joined.some((j) => j.rejoin && j.recovered), "re-joined with since, recovered");
    assert.equal(cy.transport, "sse", "the transport that worked is kept");
    const streams = requests.filter((r) => r.method === "GET");
    const last = new URL(streams.at(-1).url);
    assert.equal(last.searchParams.get("rooms"), "resume");
    assert.equal(last.searchParams.get("last_event_id"), "resume=1");
    const posts = requests.slice(requests.indexOf(streams.at(-1))).filter((r) => r.method === "POST");
    assert.ok(!posts.some((r) => r.body.includes("join_room")), "no join_room posted: the stream resumed the room");
  });

  test("sends made while the stream is down are queued and published after the re-join", async () => {
    const eve = client({ url: proxy.url, name: "eve" });
    await eve.connect();
    await eve.join("queue");
    const got = collect(eve, "message");
    proxy.refuse(true);
    proxy.cut();
    await until(() => eve.state !== "open", "the client to see the cut");
    const sent = [eve.send("queue", "q1"), eve.send("queue", "q2")];
    assert.equal(eve.queued, 2);
    proxy.refuse(false);
    assert.deepEqual(await Promise.all(sent), [1, 2]);
    await until(() => got.length === 2, "the queued messages coming back");
    assert.deepEqual(
      got.map((m) => m.message),
      ["q1", "q2"],
    );
  });

  test("a second client on the same URL goes to SSE at once: the page remembers what worked", async () => {
    const first = client({ url: proxy.url, name: "fay" });
    await first.connect();
    const refused = proxy.upgradesRefused;
    const second = client({ url: proxy.url, name: "gus" });
    await second.connect();
    assert.equal(second.transport, "sse");
    assert.equal(proxy.upgradesRefused, refused, "no WebSocket tried again");
  });

  test('transport: "websocket" never falls back: the refusals stop it', async () => {
    const hal = client({ url: proxy.url, name: "hal", transport: "websocket", maxRefusals: 2 });
    const error = await hal.connect().then(
      () => null,
      (e) => e,
    );
    assert.equal(error.code, "refused");
    assert.equal(hal.transport, null);
  });
});

test("an upgrade held unanswered falls back to SSE after connectTimeout", async () => {
  const server = await startServer([]);
  const proxy = await startProxy(server.port, { noUpgrade: "hold" });
  try {
    const mia = client({ url: proxy.url, name: "mia", connectTimeout: 400 });
    const started = Date.now();
    await mia.connect();
    assert.equal(mia.transport, "sse");
    assert.ok(Date.now() - started >= 400, "after the handshake's timeout");
    assert.equal((await mia.join("held")).room, "held");
  } finally {
    closeClients();
    await proxy.close();
    await server.stop();
  }
});

test('transport: "sse" needs no WebSocket class; a token goes as ?token=, a bad one is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), "hubbubjs-"));
  const secretFile = join(dir, "secret");
  const secret = "a-secret-of-at-least-32-bytes-long!!";
  writeFileSync(secretFile, secret);
  const server = await startServer(["--auth-secret-file", secretFile]);
  try {
    const ivy = client({ url: server.url, transport: "sse", WebSocket: null, token: mintToken(secret, "ivy", 60, { rooms: ["team-*"] }) });
    await ivy.connect();
    assert.equal(ivy.transport, "sse");
    assert.equal((await ivy.join("team-a")).room, "team-a");
    await assert.rejects(ivy.join("other"), { code: "forbidden" });
    const got = collect(ivy, "message");
    await ivy.send("team-a", "hi");
    await until(() => got.length === 1, "ivy's own message");
    assert.equal(got[0].from, "ivy");

    const bad = client({ url: server.url, transport: "sse", token: mintToken("b".repeat(36), "ivy", 60), maxRefusals: 2 });
    const error = await bad.connect().then(
      () => null,
      (e) => e,
    );
    assert.equal(error.code, "refused");
    assert.equal(bad.state, "closed");
  } finally {
    closeClients();
    await server.stop();
  }
});

/** A scripted SSE server: each `GET` is a stream the test writes to (`push`), each `POST` is
 * recorded and answered `status(body)` (202 by default). */
function scriptedSse() {
  const streams = [];
  const posts = [];
  const fake = {
    streams,
    posts,
    status: () => 202,
    async fetch(url, init = {}) {
      if ((init.method ?? "GET") === "GET") {
        let controller;
        const body = new ReadableStream({ start: (c) => (controller = c) });
        init.signal?.addEventListener("abort", () => {
          try {
            controller.error(new Error("aborted"));
          } catch {
            // already closed
          }
        });
        const encoder = new TextEncoder();
        streams.push({ url: new URL(url), push: (text) => controller.enqueue(encoder.encode(text)), end: () => controller.close() });
        return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
      }
      posts.push(JSON.parse(init.body));
      return new Response(null, { status: fake.status(init.body) });
    },
  };
  return fake;
}

const ack = (id, payload) => `event: ack\ndata: ${JSON.stringify({ type: "ack", payload, id })}\n\n`;

test("the stream's parser: CRLF and CR line ends, events split anywhere between chunks, data on two lines, comments", async () => {
  const sse = scriptedSse();
  const hub = client({ url: "ws://scripted/ws", transport: "sse", fetch: sse.fetch, name: "kim" });
  const connected = hub.connect();
  await until(() => sse.streams.length === 1, "the stream's GET");
  const stream = sse.streams[0];
  assert.equal(stream.url.pathname, "/sse");
  assert.equal(stream.url.searchParams.get("name"), "kim");
  stream.push("retry: 2000\r\n\r\nevent: hel");
  stream.push('lo\r\ndata: {"session":"S1","rooms":{}}\r');
  stream.push("\n\r\n: ping\r\r");
  await connected;
  const joined = hub.join("a");
  await until(() => sse.posts.length === 1, "the join's POST");
  assert.deepEqual(sse.posts[0], { type: "join_room", payload: { room: "a" }, id: sse.posts[0].id });
  const answer = ack(sse.posts[0].id, { room: "a", offset: 4 });
  stream.push(answer.slice(0, 9));
  stream.push(answer.slice(9).replace(/\n/g, "\r\n"));
  assert.deepEqual(await joined, { room: "a", offset: 4 });
  const got = collect(hub, "message");
  stream.push('event: new_message\nid: a=5\ndata: {"room":"a","message":"two",\ndata: "from":"x","sent":"t","offset":5}\n\n');
  stream.push('event: new_message\nid: a=5\ndata: {"room":"a","message":"again","from":"x","sent":"t","offset":5}\n\n');
  await until(() => got.length === 1, "the message written on two data lines");
  assert.equal(got[0].message, "two");
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(got.length, 1, "a repeated offset is dropped");
  closeClients();
});

test("up-channel answers: 413 posts the batch one by one and rejects the one too large; 404 reconnects and resumes in the URL", async () => {
  const sse = scriptedSse();
  sse.status = (body) => (body.startsWith("[") || body.includes("huge") ? 413 : 202);
  const hub = client({ url: "ws://scripted/ws", transport: "sse", fetch: sse.fetch, name: "lou" });
  const connected = hub.connect();
  await until(() => sse.streams.length === 1, "the stream's GET");
  sse.streams[0].push('event: hello\ndata: {"session":"S1","rooms":{}}\n\n');
  await connected;
  const joined = hub.join("a");
  await until(() => sse.posts.length === 1, "the join's POST");
  sse.streams[0].push(ack(sse.posts[0].id, { room: "a", offset: 7 }));
  await joined;
  const sends = Promise.allSettled([hub.send("a", "x"), hub.send("a", "huge"), hub.send("a", "y")]);
  await until(() => sse.posts.length === 5, "the batch (refused), then one a request");
  assert.ok(Array.isArray(sse.posts[1]) && sse.posts[1].length === 3, "the three sends went in one POST first");
  for (const [k, post] of sse.posts.slice(2).entries()) {
    if (post.payload.message !== "huge") sse.streams[0].push(ack(post.id, { room: "a", offset: 8 + k }));
  }
  const [x, huge, y] = await sends;
  assert.equal(x.value, 8);
  assert.equal(huge.reason.code, "limit_exceeded");
  assert.equal(y.value, 10);
  // the server no longer knows the stream: a dropped connection, resumed by the new stream's URL
  sse.streams[0].push('event: new_message\ndata: {"room":"a","message":"m","from":"x","sent":"t","offset":9}\n\n');
  sse.status = () => 404;
  const lost = hub.send("a", "z").then(
    () => null,
    (e) => e,
  );
  await until(() => sse.streams.length === 2, "a new stream after the 404", 5000);
  const url = sse.streams[1].url;
  assert.equal(url.searchParams.get("rooms"), "a");
  assert.equal(url.searchParams.get("last_event_id"), "a=9");
  sse.status = () => 202;
  sse.streams[1].push('event: hello\ndata: {"session":"S2","rooms":{"a":{"offset":9,"recovered":true}}}\n\n');
  await until(() => hub.state === "open", "open again");
  assert.equal((await lost).code, "disconnected", "the send in flight is not resent");
  assert.ok(!sse.posts.slice(5).some((p) => p.type === "join_room"), "the room was resumed by the URL, not re-joined");
  closeClients();
});
