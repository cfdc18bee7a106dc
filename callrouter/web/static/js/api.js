// Talking to /api/v1: the signed-in token, JSON requests, and server-sent event streams
// with a visible connection state and reconnection that backs off.

const TOKEN_KEY = "callrouter.token";
export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// ---- the token --------------------------------------------------------------------
// sessionStorage: the token lives as long as the tab, is not shared with other tabs and
// is not written to disk the way localStorage is.

const tokenListeners = new Set();

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  for (const listener of tokenListeners) listener(token || "");
}

/** Called with the new token ("" on sign-out) whenever it changes in this tab. */
export function onTokenChange(listener) {
  tokenListeners.add(listener);
  return () => tokenListeners.delete(listener);
}

// ---- requests ---------------------------------------------------------------------

/** Turn FastAPI's error bodies into one sentence (422 lists name the failing field). */
export function errorMessage(status, body) {
  const detail = body && typeof body === "object" ? body.detail ?? body.message ?? body.error : body;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        const where = Array.isArray(item.loc) ? item.loc.filter((p) => p !== "body").join(".") : "";
        return where ? `${where}: ${item.msg}` : String(item.msg ?? JSON.stringify(item));
      })
      .join("; ");
  }
  if (typeof detail === "string" && detail) return detail;
  if (detail && typeof detail === "object") return JSON.stringify(detail);
  if (status === 401) return "Not signed in, or the token is not valid.";
  if (status === 403) return "Your role may not do this.";
  if (status === 404) return "Not found.";
  return `The server answered ${status}.`;
}

let unauthorizedHandler = () => {};

/** What to do when the server says the token is not (or no longer) valid. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/** fetch() a JSON endpoint with the bearer token; throws ApiError on a non-2xx answer. */
export async function api(path, { method = "GET", body, query, token } = {}) {
  const url = new URL(path.startsWith("/") ? path : `${API}/${path}`, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const headers = { Accept: "application/json" };
  const bearer = token ?? getToken();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, "The server cannot be reached.", null);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    if (response.status === 401 && token === undefined) unauthorizedHandler();
    throw new ApiError(response.status, errorMessage(response.status, data), data);
  }
  return data;
}

// ---- event streams ----------------------------------------------------------------

/**
 * An EventSource on ``path`` that stays open across network blips.
 *
 * EventSource retries by itself while the server is unreachable (readyState goes back to
 * CONNECTING). It gives up for good (CLOSED) when the server answers with an error, for
 * example 401 after the token was revoked: then we ask ``checkAuth`` whether the token
 * still works; if not (it throws a 401 or 403 ApiError) we call ``onUnauthorized``, else
 * reopen after a growing delay. A stream the server ends on purpose (the ``closed``
 * event: token revoked, operator deactivated) is not reopened: ``onUnauthorized`` gets
 * the server's reason.
 *
 * ``onState`` gets "connecting" | "live" | "reconnecting" | "offline" | "closed".
 * ``handlers`` maps SSE event names to functions of the parsed JSON data; "message" is
 * the unnamed event. ``onUnauthorized(reason)``: "token_revoked", "operator_deactivated",
 * or the ``reason`` of the ApiError body ``checkAuth`` threw.
 */
export class Stream {
  constructor(path, { handlers, onState, checkAuth, onUnauthorized: unauthorized }) {
    this.path = path;
    this.handlers = handlers;
    this.onState = onState || (() => {});
    this.checkAuth = checkAuth;
    this.unauthorized = unauthorized || (() => {});
    this.source = null;
    this.retryTimer = null;
    this.failures = 0;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.open();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
    this.onState("closed");
  }

  open() {
    if (this.stopped) return;
    const url = new URL(this.path, location.origin);
    url.searchParams.set("access_token", getToken());
    this.onState(this.failures ? "reconnecting" : "connecting");
    const source = new EventSource(url);
    this.source = source;
    source.onopen = () => {
      this.failures = 0;
      this.onState("live");
    };
    source.onerror = () => {
      if (source !== this.source || this.stopped) return;
      if (source.readyState === EventSource.CONNECTING) {
        this.onState("reconnecting"); // the browser retries by itself
        return;
      }
      source.close();
      this.failures += 1;
      this.onState("offline");
      this.recover();
    };
    const dispatch = (name) => (event) => {
      if (source !== this.source) return;
      let data = null;
      try {
        data = event.data ? JSON.parse(event.data) : null;
      } catch {
        data = event.data;
      }
      const handler = this.handlers[name];
      if (handler) handler(data, event);
    };
    for (const name of Object.keys(this.handlers)) {
      source.addEventListener(name, dispatch(name));
    }
    // The server ended the stream on purpose: an EventSource would reconnect by itself.
    source.addEventListener("closed", (event) => {
      if (source !== this.source) return;
      let reason = null;
      try {
        reason = JSON.parse(event.data)?.reason ?? null;
      } catch {
        reason = null;
      }
      this.stop();
      this.unauthorized(reason || "closed");
    });
  }

  async recover() {
    if (this.checkAuth) {
      try {
        await this.checkAuth();
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          this.stop();
          this.unauthorized(err.body?.reason || (err.status === 401 ? "token_revoked" : "forbidden"));
          return;
        }
      }
    }
    // 1 s, 2 s, 4 s ... capped at 30 s, with jitter so a restarted server is not hit by
    // every console at the same instant.
    const base = Math.min(30000, 1000 * 2 ** Math.min(this.failures - 1, 5));
    const delay = base / 2 + Math.random() * (base / 2);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }
}

const STATE_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline — retrying",
  closed: "Signed out",
};

/** Reflect a Stream's state in a status element (role="status" in the page). */
export function showConnection(el, state) {
  el.dataset.state = state;
  el.textContent = STATE_TEXT[state] || state;
  el.title = `Event stream: ${STATE_TEXT[state] || state}`;
}

// ---- wall-screen mode -------------------------------------------------------------

const WALL_KEY = "callrouter.wall";

/** A toggle button for the large-type wall-screen layout, remembered per browser. */
export function wallToggle(button) {
  const apply = (on) => {
    document.documentElement.classList.toggle("wall", on);
    button.setAttribute("aria-pressed", on ? "true" : "false");
  };
  apply(localStorage.getItem(WALL_KEY) === "1");
  button.addEventListener("click", () => {
    const on = !document.documentElement.classList.contains("wall");
    localStorage.setItem(WALL_KEY, on ? "1" : "0");
    apply(on);
  });
}
