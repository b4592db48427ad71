// hubbub.js against a real `hubbub serve`: connect, rooms, promises, reconnects through a proxy the
// test cuts, a server restart, the offline queue, recovered: false, tickets and tokens.

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";

import { Hubbub, login } from "../hubbub.js";
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

describe("one plain server", () => {
  let server;
  before(async () => {
    server = await startServer(["--rate-limit", "0"]);
  });
  after(async () => {
    closeClients();
    await server.stop();
  });

  test("two clients join, exchange a message, see presence, history and member events", async () => {
    const ada = client({ url: server.url, name: "ada" });
    const bob = client({ url: server.url, name: "bob" });
    const joinedAda = collect(ada, "member_joined");
    const toBob = collect(bob, "message");
    await Promise.all([ada.connect(), bob.connect()]);
    assert.equal(ada.state, "open");
    assert.deepEqual(await ada.join("lobby"), { room: "lobby", offset: 0 });
    await bob.join("lobby");
    const offset = await ada.send("lobby", { text: "hi bob" });
    assert.equal(offset, 1);
    await until(() => toBob.length === 1, "bob's message");
    assert.equal(toBob[0].from, "ada");
    assert.deepEqual(toBob[0].message, { text: "hi bob" });
    await until(() => joinedAda.some((m) => m.name === "bob"), "member_joined bob");
    const presence = await bob.presence("lobby");
    assert.deepEqual(presence.members.map((m) => m.name).sort(), ["ada", "bob"]);
    const history = await bob.history("lobby", { limit: 10 });
    assert.deepEqual(
      history.messages.map((m) => m.offset),
      [1],
    );
    const left = collect(ada, "member_left");
    await bob.leave("lobby");
    await until(() => left.some((m) => m.name === "bob"), "member_left bob");
  });

  test("errors reject with the protocol's code", async () => {
    const hub = client({ url: server.url, name: "cyd" });
    await hub.connect();
    await assert.rejects(hub.send("nowhere", "x"), { code: "not_in_room" });
    await assert.rejects(hub.request("no_such_event", {}), { code: "unknown_type" });
    await assert.rejects(hub.history("nowhere"), { code: "not_in_room" });
    await hub.join("lobby");
    await assert.rejects(hub.history("lobby", { limit: 5000 }), { code: "bad_payload" });
  });

  test("a request with no answer in time rejects with timeout", async () => {
    const proxy = await startProxy(server.port);
    try {
      const hub = client({ url: proxy.url, name: "dee" });
      await hub.connect();
      await hub.join("lobby");
      proxy.hold(true); // the server's answers stop reaching the client
      await assert.rejects(hub.presence("lobby", { timeout: 300 }), { code: "timeout" });
    } finally {
      await proxy.close();
    }
  });

  test("a dropped connection is resumed: rooms re-joined with since, missed messages once, no repeats", async () => {
    const proxy = await startProxy(server.port);
    try {
      const eve = client({ url: proxy.url, name: "eve" });
      const bob = client({ url: server.url, name: "bob2" });
      const got = collect(eve, "message");
      const states = collect(eve, "state");
      const joined = collect(eve, "joined");
      await Promise.all([eve.connect(), bob.connect()]);
      await eve.join("resume");
      await bob.join("resume");
      for (const n of [1, 2]) await bob.send("resume", n);
      await until(() => got.length === 2, "the first two messages");
      proxy.refuse(true);
      proxy.cut();
      await until(() => eve.state === "reconnecting", "eve reconnecting");
      for (const n of [3, 4, 5]) await bob.send("resume", n);
      proxy.refuse(false);
      await until(() => got.length === 5, "the missed messages");
      await bob.send("resume", 6);
      await until(() => got.length === 6, "a live message after the resume");
      await new Promise((resolve) => setTimeout(resolve, 200)); // room for a repeat to show
      assert.deepEqual(
        got.map((m) => m.message),
        [1, 2, 3, 4, 5, 6],
      );
      const rejoin = joined.find((j) => j.rejoin);
      assert.deepEqual(rejoin, { room: "resume", offset: rejoin.offset, rejoin: true, recovered: true });
      assert.ok(states.some((s) => s.state === "reconnecting" && s.code === 1006 && s.delay >= 0));
      assert.equal(eve.reconnects, 1);
    } finally {
      await proxy.close();
    }
  });

  test("sends made while disconnected are queued and published after the re-join", async () => {
    const proxy = await startProxy(server.port);
    try {
      const fay = client({ url: proxy.url, name: "fay", queueLimit: 3 });
      const bob = client({ url: server.url, name: "bob3" });
      const toBob = collect(bob, "message");
      const dropped = collect(fay, "dropped");
      await Promise.all([fay.connect(), bob.connect()]);
      await fay.join("queue");
      await bob.join("queue");
      proxy.refuse(true);
      proxy.cut();
      await until(() => fay.state === "reconnecting", "fay reconnecting");
      const sends = ["a", "b", "c"].map((m) => fay.send("queue", m));
      await assert.rejects(fay.send("queue", "d"), { code: "queue_full" });
      assert.equal(dropped.length, 1);
      assert.equal(fay.queued, 3);
      assert.equal(toBob.length, 0);
      proxy.refuse(false);
      const offsets = await Promise.all(sends);
      assert.deepEqual(offsets, [1, 2, 3]);
      await until(() => toBob.length === 3, "bob's three messages");
      assert.deepEqual(
        toBob.map((m) => m.message),
        ["a", "b", "c"],
      );
      assert.equal(fay.queued, 0);
    } finally {
      await proxy.close();
    }
  });
});

test("history that no longer reaches back is signalled: room_reset, recovered: false", async () => {
  const server = await startServer(["--history-size", "2", "--rate-limit", "0"]);
  const proxy = await startProxy(server.port);
  try {
    const gus = client({ url: proxy.url, name: "gus" });
    const bob = client({ url: server.url, name: "bob" });
    const resets = collect(gus, "room_reset");
    const got = collect(gus, "message");
    await Promise.all([gus.connect(), bob.connect()]);
    await gus.join("short");
    await bob.join("short");
    await bob.send("short", 1);
    await until(() => got.length === 1, "the first message");
    proxy.refuse(true);
    proxy.cut();
    await until(() => gus.state === "reconnecting", "gus reconnecting");
    for (const n of [2, 3, 4, 5]) await bob.send("short", n);
    proxy.refuse(false);
    await until(() => resets.length === 1, "room_reset");
    assert.deepEqual(resets[0], { room: "short", since: 1, offset: 5 });
    await until(() => got.length === 3, "what history still held");
    assert.deepEqual(
      got.map((m) => m.message),
      [1, 4, 5],
    );
  } finally {
    closeClients();
    await proxy.close();
    await server.stop();
  }
});

test("a server restart: the client reconnects by itself, and a forgotten room is a room_reset", async () => {
  let server = await startServer();
  const port = server.port;
  try {
    const hal = client({ url: server.url, name: "hal" });
    const states = collect(hal, "state");
    const resets = collect(hal, "room_reset");
    const got = collect(hal, "message");
    await hal.connect();
    await hal.join("restart");
    await hal.send("restart", "before");
    await until(() => got.length === 1, "the first message");
    await server.stop();
    await until(() => hal.state === "reconnecting", "hal reconnecting");
    server = await startServer([], { port });
    await until(() => hal.state === "open", "hal open again", 30000);
    assert.ok(states.some((s) => s.state === "reconnecting" && s.code === 1001), "closed with 1001 going away");
    assert.deepEqual(resets, [{ room: "restart", since: 1, offset: 0 }]); // the new server never saw the room
    await hal.send("restart", "after");
    await until(() => got.length === 2, "the message after the restart");
    assert.equal(got[1].message, "after");
  } finally {
    closeClients();
    await server.stop();
  }
});

test("tickets: login() then a ticket per connect; a wrong password stops the client with code login", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hubbubjs-"));
  const python = process.env.HUBBUB_PYTHON ?? "python3";
  const hash = execFileSync(python, ["-m", "hubbub", "hash-password"], { input: "s3cret" }).toString().trim();
  const users = join(dir, "users");
  writeFileSync(users, `ivy:${hash}\n`);
  const server = await startServer(["--users", users]);
  const proxy = await startProxy(server.port);
  try {
    let tickets = 0;
    const loginUrl = `${server.http}/login`;
    const ivy = client({
      url: proxy.url,
      ticket: () => (tickets++, login("ivy", "s3cret", { url: loginUrl })),
    });
    const got = collect(ivy, "message");
    await ivy.connect();
    await ivy.join("lobby");
    await ivy.send("lobby", "hi");
    await until(() => got.length === 1, "ivy's own message");
    assert.equal(got[0].from, "ivy");
    proxy.cut(); // a ticket is good once: the reconnect needs a new login
    await until(() => tickets === 2 && ivy.state === "open", "a second ticket and a reconnect", 30000);

    const mallory = client({ url: server.url, ticket: () => login("ivy", "wrong", { url: loginUrl }) });
    const error = await mallory.connect().then(
      () => null,
      (e) => e,
    );
    assert.equal(error.code, "login");
    assert.equal(error.detail.status, 401);
    assert.equal(mallory.state, "closed");
  } finally {
    closeClients();
    await proxy.close();
    await server.stop();
  }
});

test("tokens: sent as a subprotocol, refreshed before they expire; a bad one is refused and not retried for ever", async () => {
  const secret = "a-secret-of-at-least-32-bytes-long!!";
  const server = await startServer(["--auth-secret-file", writeSecret(secret)]);
  try {
    let calls = 0;
    const ttl = 3; // the server closes a connection at exp + 5 s unless refreshed
    const jo = client({ url: server.url, token: () => (calls++, mintToken(secret, "jo", ttl)), refreshBefore: 30 });
    const errors = collect(jo, "error");
    const got = collect(jo, "message");
    await jo.connect();
    await jo.join("lobby");
    await until(() => calls >= 3, "two refreshes", 15000);
    await new Promise((resolve) => setTimeout(resolve, (ttl + 5 + 1) * 1000 - 1500 * 2)); // past the first token's end
    assert.equal(jo.state, "open");
    assert.equal(jo.reconnects, 0, "refreshed, never closed for expiry");
    assert.deepEqual(errors, []);
    await jo.send("lobby", "still here");
    await until(() => got.length === 1, "a message after the refreshes");
    assert.equal(got[0].from, "jo");

    const bad = client({ url: server.url, token: mintToken("another-secret-of-32-bytes-or-more!", "x", 60) });
    const states = collect(bad, "state");
    const error = await bad.connect().then(
      () => null,
      (e) => e,
    );
    assert.equal(error.code, "refused");
    assert.equal(states.filter((s) => s.state === "connecting").length, 3);
  } finally {
    closeClients();
    await server.stop();
  }
});

function writeSecret(secret) {
  const path = join(mkdtempSync(join(tmpdir(), "hubbubjs-")), "secret");
  writeFileSync(path, secret);
  return path;
}

test("an app's own events: request() resolves with its ack, rejects with its error, and server events reach on()", async () => {
  const root = fileURLToPath(new URL("../../..", import.meta.url));
  const pythonpath = [root, process.env.PYTHONPATH].filter(Boolean).join(delimiter);
  const server = await startServer(["--app", "tests.js_app:hub"], { env: { PYTHONPATH: pythonpath } });
  try {
    const kim = client({ url: server.url, name: "kim" });
    const echoed = collect(kim, "echoed");
    const every = collect(kim, "event");
    const messages = collect(kim, "message");
    await kim.connect();
    assert.deepEqual(await kim.request("shout", { text: "hey" }), { heard: "hey" });
    await assert.rejects(kim.request("shout", { text: "" }), { code: "forbidden", message: "say something" });
    await until(() => echoed.length === 1 && every.length === 2, "the app's events");
    assert.deepEqual(echoed, [{ text: "HEY" }]);
    assert.deepEqual(
      every.map((e) => e.type),
      ["echoed", "message"],
    );
    assert.deepEqual(messages, []); // an app event named `message` is not a chat message
  } finally {
    closeClients();
    await server.stop();
  }
});

/** An app behind `--rpc-proxy`: `echo` answers its data, `secret` is 403, `slow` never answers, others 418. */
async function startRpcApp() {
  const asked = [];
  const app = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => {
      const call = JSON.parse(body);
      asked.push({ call, signature: request.headers["x-hubbub-signature"] });
      if (call.method === "slow") return; // never answered: hubbub gives up after --proxy-timeout
      const [status, answer] =
        call.method === "echo" ? [200, { data: call.data }] : call.method === "secret" ? [403, {}] : [418, {}];
      response.writeHead(status, { "Content-Type": "application/json" });
      response.end(JSON.stringify(answer));
    });
  });
  await new Promise((resolve) => app.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${app.address().port}/rpc`,
    asked,
    close: () => new Promise((resolve) => app.closeAllConnections() || app.close(resolve)),
  };
}

test("rpc() resolves with the data of an --app method or of the --rpc-proxy, rejects with the error's code", async () => {
  const root = fileURLToPath(new URL("../../..", import.meta.url));
  const pythonpath = [root, process.env.PYTHONPATH].filter(Boolean).join(delimiter);
  const app = await startRpcApp();
  const server = await startServer(
    ["--app", "tests.js_app:hub", "--rpc-proxy", app.url, "--webhook-secret", "js-secret", "--proxy-timeout", "0.5"],
    { env: { PYTHONPATH: pythonpath } },
  );
  try {
    const lee = client({ url: server.url, name: "lee" });
    const calling = lee.rpc("add", { a: 2, b: 3 }); // made before connecting: sent once connected
    await lee.connect();
    assert.equal(await calling, 5); // in-process, the app behind the proxy not asked
    assert.equal(app.asked.length, 0);
    await assert.rejects(lee.rpc("add", "two"), { code: "bad_payload" });
    await assert.rejects(lee.rpc("vault"), { code: "forbidden", message: "root only" });
    assert.deepEqual(await lee.rpc("echo", { list: [1, "two", null] }), { list: [1, "two", null] });
    assert.equal(await lee.rpc("echo"), null);
    assert.equal(app.asked[0].call.user, "lee");
    assert.match(app.asked[0].signature, /^sha256=[0-9a-f]{64}$/);
    await assert.rejects(lee.rpc("secret", 1), { code: "forbidden" });
    await assert.rejects(lee.rpc("teapot"), { code: "unavailable" });
    await assert.rejects(lee.rpc("slow"), { code: "unavailable" });
    await assert.rejects(lee.rpc(""), { code: "bad_payload" }); // refused by the client, never sent
    await assert.rejects(lee.rpc(42), { code: "bad_payload" });
    await assert.rejects(lee.rpc("echo", 1, { timeout: 1 }), { code: "timeout" });
  } finally {
    closeClients();
    await server.stop();
    await app.close();
  }
});

test("join(room, { since }) after a reload replays what was missed, or says room_reset", async () => {
  const server = await startServer(["--history-size", "3", "--rate-limit", "0"]);
  try {
    const writer = client({ url: server.url, name: "writer" });
    await writer.connect();
    await writer.join("kept");
    for (const n of [1, 2, 3, 4, 5]) await writer.send("kept", n);
    const reader = client({ url: server.url, name: "reader" });
    const got = collect(reader, "message");
    const resets = collect(reader, "room_reset");
    const joined = collect(reader, "joined");
    const joining = reader.join("kept", { since: 3 }); // made before connecting: sent once connected
    await reader.connect();
    await joining;
    await until(() => got.length === 2, "the two missed messages");
    assert.deepEqual(
      got.map((m) => m.offset),
      [4, 5],
    );
    assert.deepEqual(joined, [{ room: "kept", offset: 5, rejoin: false, recovered: true }]);
    await reader.join("short", { since: 0 });
    await writer.join("short");
    await writer.send("short", "x");
    await until(() => got.length === 3, "a live message");
    const late = client({ url: server.url, name: "late" });
    const lateResets = collect(late, "room_reset");
    await late.connect();
    await late.join("kept", { since: 1 }); // history holds 3..5 only
    await until(() => lateResets.length === 1, "room_reset for a reload too far back");
    assert.deepEqual(lateResets, [{ room: "kept", since: 1, offset: 5 }]);
    assert.deepEqual(resets, []);
  } finally {
    closeClients();
    await server.stop();
  }
});
