// The example's page: served by the app, connected to a hubbub node with hubbub.js loaded from it.
//
// The app's session cookie is all the page needs: it opens hubbub's /ws with no ticket and no token,
// the browser sends the cookie (same host, another port), and hubbub's connect proxy asks the app
// who that is. History comes from the app's store (filled by webhooks), topped up from hubbub's own
// history for the last seconds the webhooks may not have delivered yet.

const $ = (id) => document.getElementById(id);

let hub = null; // the Hubbub client
let current = null; // the room shown
let shown = new Map(); // offset -> <li> of the room shown: each message once, in offset order
const names = new Map(); // identity -> display name, from presence info
let activityTimer = null;

async function call(method, url, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({}));
  return { status: response.status, data };
}

// ---- logging in, with the app's own session ------------------------------------------------------

function showLogin(message = "") {
  $("chat").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("username").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { status } = await call("POST", "/login", { username: $("username").value, password: $("password").value });
  if (status !== 200) return showLogin(status === 401 ? "Wrong name or password." : `The app answered ${status}.`);
  $("password").value = "";
  start();
});

$("logout").addEventListener("click", async () => {
  hub?.close();
  hub = null;
  current = null;
  clearInterval(activityTimer);
  await call("POST", "/logout");
  showLogin("You logged out.");
});

// ---- connecting to hubbub -------------------------------------------------------------------------

/** The hubbub node of this page: `?node=N` (1-based), else one at random (what a load balancer does). */
function pickNode(nodes) {
  const wanted = Number(new URLSearchParams(location.search).get("node"));
  const index = wanted >= 1 && wanted <= nodes.length ? wanted - 1 : Math.floor(Math.random() * nodes.length);
  return { url: nodes[index], number: index + 1 };
}

async function start() {
  const { status, data: session } = await call("GET", "/session");
  if (status === 401) return showLogin();
  $("login").hidden = true;
  $("chat").hidden = false;
  $("me").textContent = `${session.display}${session.admin ? " (admin)" : ""}`;
  $("announce-form").hidden = !session.admin;

  const node = pickNode(session.nodes);
  const nodeHost = new URL(node.url).hostname;
  if (nodeHost !== location.hostname) {
    // the cookie belongs to this page's host: hubbub on another name would not get it
    $("host-warning").hidden = false;
    $("host-warning").textContent =
      `Open this page at ${location.protocol}//${nodeHost}:${location.port}/ : the session cookie reaches ` +
      `hubbub only on the same host name.`;
  }
  const { Hubbub } = await import(new URL("/hubbub.js", node.url).href);
  const ws = new URL("/ws", node.url);
  ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
  hub = new Hubbub({ url: ws.href }); // no name, ticket or token: the app's cookie says who we are

  const statusLine = $("status");
  hub.on("state", ({ state, error }) => {
    statusLine.dataset.state = state;
    const where = `node ${node.number} (${new URL(node.url).host})`;
    statusLine.textContent = {
      connecting: `connecting to ${where}...`,
      open: `connected to ${where}`,
      reconnecting: `reconnecting to ${where}...`,
      closed: error ? `disconnected: ${error.message}` : "disconnected",
    }[state] ?? state;
    if (state === "closed" && error?.code === "app") showLogin("You were logged out.");
    if (state === "closed" && error?.code === "refused") showLogin("hubbub refused the connection: log in again.");
  });
  hub.on("message", (m) => {
    if (m.room === current) show(m, "live");
  });
  const membership = ({ room }) => {
    if (room === current) refreshPresence();
    setTimeout(refreshActivity, 500); // the app hears of it by webhook, a moment later
  };
  hub.on("member_joined", membership);
  hub.on("member_left", membership);
  hub.on("joined", ({ room, rejoin }) => {
    if (rejoin && room === current) refreshPresence();
  });

  renderRooms(session.rooms);
  hub.connect();
  await openRoom(session.rooms[0]);
  refreshActivity();
  clearInterval(activityTimer);
  activityTimer = setInterval(refreshActivity, 5000); // and soon after each join or leave, below
}

// ---- rooms, history, presence -----------------------------------------------------------------------

function renderRooms(rooms) {
  const list = $("rooms").querySelector("ul");
  list.replaceChildren();
  for (const room of rooms) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `# ${room}`;
    button.dataset.room = room;
    button.addEventListener("click", () => openRoom(room));
    const item = document.createElement("li");
    item.append(button);
    list.append(item);
  }
}

async function openRoom(room) {
  if (room === current) return;
  if (current) hub.leave(current);
  current = room;
  shown = new Map();
  $("log").replaceChildren();
  $("room-title").textContent = `# ${room}`;
  for (const button of $("rooms").querySelectorAll("button")) {
    button.setAttribute("aria-current", String(button.dataset.room === room));
  }
  const joined = await hub.join(room); // live messages from here on; `offset` is the room's latest
  if (current !== room) return;
  // The app's stored history: the record that lasts.
  const { status, data } = await call("GET", `/rooms/${encodeURIComponent(room)}/messages`);
  if (current !== room) return;
  const stored = status === 200 ? data.messages : [];
  for (const m of stored) show(m, "app");
  // What hubbub published before the join that the app's webhook has not stored yet (a few ms' worth):
  const last = stored.length ? stored[stored.length - 1].offset : 0;
  if (joined.offset > last) {
    const { messages } = await hub.history(room, { since: last });
    if (current === room) for (const m of messages) if (m.offset <= joined.offset) show(m, "hubbub");
  }
  if (current === room && shown.size) divider("history above, live below");
  refreshPresence();
}

/** One message in the room's log, in offset order, once. `source`: app (stored), hubbub (history), live. */
function show(m, source) {
  if (shown.has(m.offset)) return;
  const item = document.createElement("li");
  item.dataset.offset = m.offset;
  item.dataset.source = source;
  const body = m.message ?? {};
  if (typeof body.notice === "string" && m.from === "app") {
    item.className = "notice";
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "notice";
    item.append(badge, `${body.by ?? "The app"} announces: ${body.notice}`);
  } else {
    item.className = "message";
    item.dataset.from = m.from;
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = names.get(m.from) ?? m.from;
    item.append(from, typeof body.text === "string" ? body.text : JSON.stringify(body));
  }
  const time = document.createElement("time");
  time.dateTime = m.sent;
  time.textContent = new Date(m.sent).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  item.append(time);
  const later = [...shown.keys()].filter((o) => o > m.offset).sort((a, b) => a - b)[0];
  $("log").insertBefore(item, later === undefined ? null : shown.get(later));
  shown.set(m.offset, item);
  if (later === undefined) $("log").scrollTop = $("log").scrollHeight;
}

function note(text, className) {
  const item = document.createElement("li");
  item.className = className;
  item.textContent = text;
  $("log").append(item);
  $("log").scrollTop = $("log").scrollHeight;
}

function divider(text) {
  $("log").querySelector("li.divider")?.remove();
  note(text, "divider");
}

async function refreshPresence() {
  const room = current;
  let presence;
  try {
    presence = await hub.presence(room);
  } catch {
    return; // disconnected: the re-join refreshes it
  }
  if (room !== current) return;
  const list = $("members");
  list.replaceChildren();
  for (const member of presence.members) {
    const display = member.info?.display ?? member.name;
    names.set(member.name, display);
    const item = document.createElement("li");
    item.dataset.name = member.name;
    item.textContent = display;
    if (member.connections > 1) {
      const small = document.createElement("small");
      small.textContent = ` ×${member.connections}`;
      item.append(small);
    }
    list.append(item);
  }
  // history shown before presence was known: its senders get their display names now
  for (const line of $("log").querySelectorAll("li.message[data-from]")) {
    const display = names.get(line.dataset.from);
    if (display) line.querySelector(".from").textContent = display;
  }
}

async function refreshActivity() {
  const { status, data } = await call("GET", "/activity");
  if (status !== 200) return;
  const list = $("activity");
  list.replaceChildren();
  for (const a of data.activity.slice().reverse()) {
    const item = document.createElement("li");
    item.textContent = `${a.user} ${a.type === "member_joined" ? "joined" : "left"} #${a.room} `;
    const small = document.createElement("small");
    small.textContent = new Date(a.time).toLocaleTimeString();
    item.append(small);
    list.append(item);
  }
}

// ---- sending, announcing ----------------------------------------------------------------------------

const REFUSED = {
  forbidden: "the app refused it: it contains a word this chat does not allow.",
  rate_limited: "you are sending too fast: wait a moment.",
  unavailable: "the app did not answer in time: try again.",
  not_in_room: "this room is not joined yet: try again.",
};

$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !hub) return;
  $("text").value = "";
  try {
    await hub.send(current, { text });
  } catch (error) {
    note(`“${text}” was not sent: ${REFUSED[error.code] ?? error.message}`, "refused");
    $("text").value = text; // keep it, to edit
  }
});

$("announce-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { status, data } = await call("POST", "/announce", { text: $("announcement").value });
  $("announce-result").textContent = status === 200 ? "Announced in every room." : `Not announced: ${data.error}`;
  if (status === 200) $("announcement").value = "";
});

start();
