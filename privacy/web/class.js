// The teacher's live class page. Plain ES module, no dependencies.
// Every value from the server is written with textContent, never as markup, so a student named
// "<img src=x onerror=alert(1)>" is shown as text; the Content-Security-Policy forbids inline script as well.
// The session lives in an HttpOnly cookie: this script never sees it, and keeps the token only for the
// one sign-in request.

const STALE_AFTER_MS = 12000; // the server pings every 5 s; two missed pings mean the view may be old
const RETRY_MAX_MS = 10000;
const CODE_MAX_CHARS = 16; // one-time codes are 12 characters, tokens 43

const $ = (id) => document.getElementById(id);
const VIEWS = ["sign-in", "classes", "class", "forbidden"];
const STATE_LABEL = { online: "Online", offline: "Offline", inactive: "No activity today" };

const live = {
  source: null,
  classId: null,
  lastMessage: 0,
  connected: false,
  off: false, // the server said monitoring is off for this class now
  retryMs: 1000,
  retryTimer: null,
};

function show(view) {
  for (const name of VIEWS) $(name).hidden = name !== view;
}

function notice(message) {
  $("notice").textContent = message;
  $("notice").hidden = !message;
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    const response = await fetch(path, init);
    const data = await response.json().catch(() => null);
    return { status: response.status, data };
  } catch {
    return { status: 0, data: null }; // the server is unreachable
  }
}

// --- signing in and out

function signedIn(me) {
  $("who").textContent = `Signed in as ${me.teacher_id}`;
  $("who").hidden = false;
  $("sign-out").hidden = false;
  const list = $("class-list");
  list.replaceChildren();
  for (const id of me.classes) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `#/class/${encodeURIComponent(id)}`;
    link.textContent = `Class ${id}`;
    item.append(link);
    list.append(item);
  }
  route();
}

function signedOut(message) {
  stopStream();
  $("who").hidden = true;
  $("sign-out").hidden = true;
  show("sign-in");
  notice(message);
  $("secret").focus();
}

async function signIn(event) {
  event.preventDefault();
  const secret = $("secret").value.trim();
  $("secret").value = ""; // the token does not stay in the page
  if (!secret) return;
  const body = secret.length <= CODE_MAX_CHARS ? { code: secret } : { token: secret };
  const { status, data } = await api("POST", "/v1/session", body);
  if (status === 200 && data) {
    $("sign-in-error").hidden = true;
    notice("");
    signedIn(data);
  } else {
    $("sign-in-error").textContent =
      status === 0 ? "The server cannot be reached. Try again." : "That token or code is not valid.";
    $("sign-in-error").hidden = false;
    $("secret").focus();
  }
}

async function signOut() {
  await api("DELETE", "/v1/session");
  signedOut("You are signed out.");
}

// --- which view

function route() {
  stopStream();
  const match = location.hash.match(/^#\/class\/(.+)$/);
  if (match) {
    openClass(decodeURIComponent(match[1]));
  } else {
    show("classes");
  }
}

function openClass(classId) {
  live.classId = classId;
  live.lastMessage = 0;
  live.off = false;
  $("class-title").textContent = `Class ${classId}`;
  $("students").replaceChildren();
  $("counts").textContent = "";
  $("off").hidden = true;
  show("class");
  connect();
}

// --- the live stream

function connect() {
  const url = `/v1/page/classes/${encodeURIComponent(live.classId)}/stream`;
  const source = new EventSource(url);
  live.source = source;
  source.addEventListener("presence", (e) => {
    live.off = false;
    fresh();
    renderClass(JSON.parse(e.data));
  });
  source.addEventListener("monitoring", () => {
    live.off = true; // before fresh(): the badge must not say "Live" over a page that shows no one
    fresh();
    renderOff();
  });
  source.addEventListener("ping", fresh);
  source.addEventListener("revoked", () => {
    stopStream();
    recover();
  });
  source.onerror = () => {
    live.connected = false;
    updateLiveness();
    if (source.readyState === EventSource.CLOSED) {
      // The server answered with an error (signed out, not allowed) or is down: ask it why.
      stopStream();
      recover();
    }
  };
}

function stopStream() {
  if (live.source) live.source.close();
  live.source = null;
  live.connected = false;
  clearTimeout(live.retryTimer);
}

async function recover() {
  const classId = live.classId;
  const { status } = await api("GET", `/v1/page/classes/${encodeURIComponent(classId)}`);
  if (classId !== live.classId || $("class").hidden) return; // the teacher went elsewhere meanwhile
  if (status === 401) {
    signedOut("Your session has ended. Sign in again.");
  } else if (status === 403) {
    show("forbidden");
  } else {
    live.retryTimer = setTimeout(() => {
      if (classId === live.classId && !$("class").hidden) connect();
    }, live.retryMs);
    live.retryMs = Math.min(live.retryMs * 2, RETRY_MAX_MS);
  }
}

function fresh() {
  live.lastMessage = Date.now();
  live.connected = true;
  live.retryMs = 1000;
  updateLiveness();
}

function updateLiveness() {
  if ($("class").hidden) return;
  const stale = !live.connected || Date.now() - live.lastMessage > STALE_AFTER_MS;
  const el = $("live");
  el.dataset.state = stale ? "stale" : live.off ? "off" : "live";
  if (!stale) {
    el.textContent = live.off ? "Monitoring off" : "Live";
  } else if (live.lastMessage) {
    const at = new Date(live.lastMessage).toLocaleTimeString();
    el.textContent = `Reconnecting… shown as of ${at}`;
  } else {
    el.textContent = "Connecting…";
  }
  $("students").classList.toggle("stale", stale);
}

// --- rendering (text only)

function renderOff() {
  $("off").hidden = false;
  $("counts").textContent = "";
  $("students").replaceChildren();
}

function renderClass(view) {
  $("off").hidden = true;
  const inactive = view.students.filter((s) => s.state === "inactive").length;
  let counts = `${view.online} of ${view.total} online`;
  if (inactive) counts += ` · ${inactive} with no activity today`;
  $("counts").textContent = counts;
  $("students").replaceChildren(...view.students.map(studentTile));
}

function studentTile(student) {
  const item = document.createElement("li");
  item.className = `student ${student.state}`;
  item.dataset.row = student.row;
  item.dataset.state = student.state;
  const dot = document.createElement("span");
  dot.className = "dot";
  dot.setAttribute("aria-hidden", "true");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = student.name || "(name not available)";
  const state = document.createElement("span");
  state.className = "state";
  state.textContent = STATE_LABEL[student.state] || student.state;
  const subApp = document.createElement("span");
  subApp.className = "sub-app";
  subApp.textContent = student.state === "online" ? student.sub_app || "—" : "";
  item.append(dot, name, state, subApp);
  return item;
}

// --- start

async function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("back").addEventListener("click", (e) => {
    e.preventDefault();
    location.hash = "";
  });
  window.addEventListener("hashchange", () => {
    if (!$("sign-out").hidden) route();
  });
  setInterval(updateLiveness, 1000);
  const { status, data } = await api("GET", "/v1/session");
  if (status === 200 && data) {
    signedIn(data);
  } else {
    signedOut("");
  }
}

start();
