// Test support: a real `hubbub serve` in a child process, a TCP proxy the tests can cut or hold,
// JWTs signed like `hubbub token`, and waiting helpers. Not a test file itself.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import net from "node:net";

/** Start `hubbub serve` (python from HUBBUB_PYTHON, else python3) on 127.0.0.1; resolves when it listens. */
export async function startServer(args = [], { port = 0, env = {} } = {}) {
  const python = process.env.HUBBUB_PYTHON ?? "python3";
  const child = spawn(python, ["-m", "hubbub", "serve", "--host", "127.0.0.1", "--port", String(port), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let output = "";
  const bound = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hubbub serve did not start in 30 s:\n${output}`)), 30000);
    const read = (chunk) => {
      output += chunk;
      const found = /server\.listening .*?port=(\d+)/.exec(output);
      if (found) {
        clearTimeout(timer);
        resolve(Number(found[1]));
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`hubbub serve exited with ${code}:\n${output}`));
    });
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  return {
    port: bound,
    url: `ws://127.0.0.1:${bound}/ws`,
    http: `http://127.0.0.1:${bound}`,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

const REFUSAL = "HTTP/1.1 403 Forbidden\r\nContent-Length: 24\r\nConnection: close\r\n\r\nWebSockets are blocked.\n";

/** A TCP proxy to `port`: `cut()` drops every connection (no close frame: the client sees 1006),
 * `refuse(true)` drops new ones at once, `hold(true)` stops passing the server's bytes to clients.
 * With `{ noUpgrade: true }` it answers a request with an `Upgrade` header 403 (as a corporate proxy
 * that blocks WebSockets) and forwards everything else; `upgradesRefused` counts them. With
 * `{ noUpgrade: "hold" }` it never answers them (a proxy that swallows the upgrade). */
export async function startProxy(port, { noUpgrade = false } = {}) {
  const pairs = new Set();
  let refusing = false;
  let holding = false;
  let upgradesRefused = 0;
  const waiting = new Set();
  const server = net.createServer((client) => {
    if (refusing) return client.destroy();
    if (noUpgrade) {
      waiting.add(client); // until its first bytes say what it is, or until it closes if refused
      client.once("data", (head) => {
        if (/\r\nupgrade\s*:/i.test(head.toString("latin1"))) {
          upgradesRefused += 1;
          if (noUpgrade === "hold") return; // never answered (until cut)
          return client.end(REFUSAL, () => client.destroy());
        }
        waiting.delete(client);
        client.unshift(head);
        forward(client);
      });
      client.on("error", () => client.destroy());
      client.on("close", () => waiting.delete(client));
      return;
    }
    forward(client);
  });
  const forward = (client) => {
    const upstream = net.connect(port, "127.0.0.1");
    const pair = { client, upstream };
    pairs.add(pair);
    client.pipe(upstream);
    if (!holding) upstream.pipe(client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on("error", end);
      s.on("close", end);
    }
  };
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const proxyPort = server.address().port;
  return {
    url: `ws://127.0.0.1:${proxyPort}/ws`,
    get connections() {
      return pairs.size;
    },
    get upgradesRefused() {
      return upgradesRefused;
    },
    cut() {
      for (const client of waiting) client.destroy();
      waiting.clear();
      for (const { client, upstream } of pairs) {
        if (client.writableEnded || !client.resetAndDestroy) client.destroy();
        else client.resetAndDestroy(); // an RST: the client sees 1006, as after a network cut
        upstream.destroy();
      }
      pairs.clear();
    },
    refuse(flag) {
      refusing = flag;
    },
    hold(flag) {
      holding = flag;
      for (const { client, upstream } of pairs) {
        if (flag) upstream.unpipe(client);
        else upstream.pipe(client);
      }
    },
    async close() {
      this.cut();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const b64url = (value) => Buffer.from(value).toString("base64url");

/** A JWT signed with HMAC-SHA256, as `hubbub token` makes them. */
export function mintToken(secret, sub, ttlSeconds, extra = {}) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + ttlSeconds, ...extra }));
  const signature = createHmac("sha256", secret).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
}

/** Wait until `check()` is truthy (polled), or fail naming `what`. */
export async function until(check, what, timeout = 15000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Every event of `type` the client emits, collected. */
export function collect(hub, type) {
  const seen = [];
  hub.on(type, (event) => seen.push(event));
  return seen;
}

/** Reconnect quickly in tests: the bounds, not the shape, of the backoff are what change. */
export const FAST = { base: 50, max: 400, stable: 1000 };
