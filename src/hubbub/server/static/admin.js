// The admin dashboard (/admin): polls /admin/api/stats every second and the rooms every two, draws
// its own charts on canvas, and sends actions with the session's CSRF token. Loads nothing from
// another origin (the page's Content-Security-Policy forbids it anyway). docs/howto/admin.md.

const $ = (id) => document.getElementById(id);
const STATS_EVERY = 1000;
const ROOMS_EVERY = 2000;
const KEEP = 300; // points per chart: five minutes at one a second

let csrf = null;
let timers = [];
let openRoom = null;

class Unauthorized extends Error {}

async function call(path, { method = "GET", body } = {}) {
  const headers = {};
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (csrf) headers["X-CSRF-Token"] = csrf;
  }
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  if (response.status === 401 && path !== "/admin/login") throw new Unauthorized();
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((data.error && data.error.message) || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function say(text, kind = "ok") {
  const status = $("status");
  status.textContent = text;
  status.dataset.kind = kind;
}

// ---- charts ---------------------------------------------------------------

const CHARTS = [
  ["connections", "Connections", 1],
  ["in", "Messages in /s", 2],
  ["out", "Deliveries out /s", 3],
  ["slow", "Slow consumers dropped /s", 4],
  ["limited", "Rate-limited /s", 5],
  ["webhooks", "Webhook backlog", 6],
];
const charts = new Map();

function makeCharts() {
  const box = $("charts");
  box.replaceChildren();
  for (const [key, title, index] of CHARTS) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.style.margin = "0";
    const head = document.createElement("h3");
    const name = document.createElement("span");
    name.textContent = title;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = "-";
    head.append(name, value);
    const canvas = document.createElement("canvas");
    canvas.dataset.chart = key;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${title} over the last minutes`);
    figure.append(head, canvas);
    box.append(figure);
    charts.set(key, { index, canvas, value, points: [] });
  }
}

function addPoint(point) {
  for (const chart of charts.values()) {
    const t = point[0];
    const last = chart.points[chart.points.length - 1];
    if (last && last[0] >= t) continue;
    chart.points.push([t, point[chart.index]]);
    if (chart.points.length > KEEP) chart.points.shift();
  }
}

function niceMax(value) {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function format(value) {
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function draw(chart) {
  const { canvas, points } = chart;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (!width || !height) return;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const left = 34;
  const bottom = height - 4;
  const top = 6;
  const now = points.length ? points[points.length - 1][0] : Date.now() / 1000;
  // the window grows with what the page has, from one minute up to KEEP seconds
  const span = Math.min(KEEP, Math.max(60, points.length ? now - points[0][0] : 0));
  const max = niceMax(Math.max(0, ...points.map((p) => p[1])));
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#4d5864";
  g.strokeStyle = "#d0d6dd";
  g.lineWidth = 1;
  for (const fraction of [0, 0.5, 1]) {
    const y = bottom - (bottom - top) * fraction;
    g.beginPath();
    g.moveTo(left, Math.round(y) + 0.5);
    g.lineTo(width, Math.round(y) + 0.5);
    g.stroke();
    g.fillText(format(max * fraction), 2, Math.min(bottom, y + 4));
  }
  if (!points.length) return;
  g.strokeStyle = "#2a5a8c";
  g.lineWidth = 1.75;
  g.beginPath();
  points.forEach(([t, v], i) => {
    const x = left + ((width - left) * (span - (now - t))) / span;
    const y = bottom - ((bottom - top) * v) / max;
    if (i === 0) g.moveTo(x, y);
    else g.lineTo(x, y);
  });
  g.stroke();
  const last = points[points.length - 1][1];
  chart.value.textContent = format(last);
  canvas.dataset.points = String(points.length);
  canvas.dataset.last = String(last);
}

function drawAll() {
  for (const chart of charts.values()) draw(chart);
}

// ---- numbers ----------------------------------------------------------------

function bytes(n) {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(0)} MiB`;
  return `${(n / 1024).toFixed(0)} KiB`;
}

function uptime(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return `${m}m ${seconds % 60}s`;
}

function since(at) {
  return at ? new Date(at * 1000).toLocaleTimeString() : "";
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  td.title = text;
  return td;
}

async function pollStats() {
  const stats = await call("/admin/api/stats");
  const t = stats.totals;
  if (t.nodes === undefined) return;
  $("node").textContent = stats.node;
  $("t-nodes").textContent = t.nodes;
  $("t-connections").textContent = format(t.connections);
  $("t-in").textContent = format(t.in_rate);
  $("t-out").textContent = format(t.out_rate);
  $("t-slow").textContent = format(t.slow_dropped);
  $("t-limited").textContent = format(t.rate_limited);
  $("t-webhooks").textContent = format(t.webhook_backlog);
  $("t-rss").textContent = bytes(t.rss);
  const body = $("nodes").tBodies[0];
  body.replaceChildren(
    ...stats.nodes.map((n) => {
      const row = document.createElement("tr");
      row.append(cell(n.node), cell(uptime(n.at - n.started)), cell(format(n.connections), "num"), cell(bytes(n.rss), "num"));
      return row;
    }),
  );
  addPoint(stats.point);
  drawAll();
}

async function pollRooms() {
  const answer = await call("/admin/api/rooms");
  $("rooms-count").textContent = `${answer.total}${answer.truncated ? "+" : ""}`;
  const body = $("rooms").tBodies[0];
  body.replaceChildren(
    ...answer.rooms.map((r) => {
      const rate = r.rate === null ? "" : format(r.rate);
      const row = document.createElement("tr");
      const name = document.createElement("td");
      const open = document.createElement("button");
      open.type = "button";
      open.textContent = r.room;
      open.title = `Open ${r.room}`;
      open.addEventListener("click", () => showRoom(r.room));
      name.append(open);
      row.append(name, cell(format(r.members), "num"), cell(rate, "num"));
      row.dataset.room = r.room;
      return row;
    }),
  );
}

// ---- a room -----------------------------------------------------------------

function button(text, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

function confirmThen(text, action) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "yes") return;
    try {
      await action();
    } catch (error) {
      failed(error);
    }
  };
  dialog.showModal();
}

function disconnectUser(user) {
  confirmThen(`Disconnect ${user} on every node?`, async () => {
    await call("/admin/api/disconnect", { method: "POST", body: { user } });
    say(`${user} disconnected`);
    if (openRoom) await loadRoom();
  });
}

async function showRoom(room) {
  openRoom = room;
  $("room").hidden = false;
  $("room-title").textContent = `Room ${room}`;
  await loadRoom();
  $("room-title").scrollIntoView({ block: "nearest" });
}

async function loadRoom() {
  if (!openRoom) return;
  const room = openRoom;
  const answer = await call(`/admin/api/room?room=${encodeURIComponent(room)}`);
  if (room !== openRoom) return;
  $("members").replaceChildren(
    ...answer.members.map((m) => {
      const li = document.createElement("li");
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = m.name;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `on ${m.node}${m.since ? ` since ${since(m.since)}` : ""}`;
      const actions = document.createElement("span");
      actions.className = "actions";
      actions.append(
        button("Remove", "small secondary", () =>
          confirmThen(`Remove ${m.name} from ${room}?`, async () => {
            await call("/admin/api/remove", { method: "POST", body: { user: m.name, room } });
            say(`${m.name} removed from ${room}`);
            await loadRoom();
          }),
        ),
        button("Disconnect", "small danger", () => disconnectUser(m.name)),
      );
      li.append(who, meta, actions);
      return li;
    }),
  );
  $("messages").replaceChildren(
    ...answer.messages.map((p) => {
      const li = document.createElement("li");
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `#${p.offset ?? ""} ${p.from ?? ""} `;
      const text = document.createElement("span");
      const message = p.message;
      text.textContent = message && typeof message.text === "string" ? message.text : JSON.stringify(message);
      li.append(meta, text);
      return li;
    }),
  );
}

// ---- find -------------------------------------------------------------------

async function find(event) {
  event.preventDefault();
  const name = $("find-name").value.trim();
  if (!name) return;
  const answer = await call(`/admin/api/find?name=${encodeURIComponent(name)}`);
  const list = $("found");
  if (!answer.connections.length) {
    const li = document.createElement("li");
    li.textContent = `No connection on ${answer.node} matches "${name}".`;
    list.replaceChildren(li, foundRow(name, null));
    return;
  }
  list.replaceChildren(...answer.connections.map((c) => foundRow(c.user, c)));
}

function foundRow(user, c) {
  const li = document.createElement("li");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = user;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = c
    ? `#${c.id} on ${c.node} from ${c.remote} since ${since(c.since)}${c.rooms.length ? ` in ${c.rooms.join(", ")}` : ""}`
    : "on other nodes, if connected";
  const actions = document.createElement("span");
  actions.className = "actions";
  actions.append(button("Disconnect", "small danger", () => disconnectUser(user)));
  li.append(who, meta, actions);
  return li;
}

// ---- session ----------------------------------------------------------------

function failed(error) {
  if (error instanceof Unauthorized) {
    showLogin("Your session ended: log in again.");
    return;
  }
  $("live").dataset.state = "error";
  $("live").textContent = "error";
  say(error.message, "error");
}

function every(ms, work) {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      await work();
      $("live").dataset.state = "live";
      $("live").textContent = "live";
    } catch (error) {
      failed(error);
    } finally {
      running = false;
    }
  };
  tick();
  timers.push(setInterval(tick, ms));
}

function stop() {
  for (const timer of timers) clearInterval(timer);
  timers = [];
}

function showLogin(message = "") {
  stop();
  csrf = null;
  $("dashboard").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("live").dataset.state = "idle";
  $("live").textContent = "not connected";
  $("login-error").textContent = message;
  $("password").focus();
}

async function showDashboard() {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("logout").hidden = false;
  try {
    const answer = await call("/admin/api/series");
    for (const point of answer.series) addPoint(point);
  } catch (error) {
    failed(error);
    return;
  }
  every(STATS_EVERY, pollStats);
  every(ROOMS_EVERY, pollRooms);
  every(ROOMS_EVERY, loadRoom);
}

async function login(event) {
  event.preventDefault();
  const password = $("password");
  try {
    const answer = await call("/admin/login", { method: "POST", body: { password: password.value } });
    csrf = answer.csrf;
    password.value = "";
    $("login-error").textContent = "";
    await showDashboard();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

async function logout() {
  try {
    await call("/admin/logout", { method: "POST" });
  } catch (error) {
    if (!(error instanceof Unauthorized)) say(error.message, "error");
  }
  showLogin("Logged out.");
}

async function start() {
  makeCharts();
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("find-form").addEventListener("submit", (event) => find(event).catch(failed));
  $("room-close").addEventListener("click", () => {
    openRoom = null;
    $("room").hidden = true;
  });
  $("notice-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("notice-text").value.trim();
    const room = openRoom;
    if (!text || !room) return;
    confirmThen(`Publish this notice to ${room}? "${text}"`, async () => {
      await call("/admin/api/notice", { method: "POST", body: { room, text } });
      $("notice-text").value = "";
      say(`Notice published to ${room}`);
      await loadRoom();
    });
  });
  window.addEventListener("resize", drawAll);
  try {
    const session = await call("/admin/api/session");
    csrf = session.csrf;
    await showDashboard();
  } catch (error) {
    if (error instanceof Unauthorized) showLogin();
    else failed(error);
  }
}

start();
