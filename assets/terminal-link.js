// The browser side of envhub's terminal protocol (envhub/api/terminal/protocol.py):
// one object per terminal session that keeps a socket to it, reconnecting with
// backoff, answering keepalives and acknowledging output once xterm has
// rendered it (the server pauses a flood until we catch up).
import env from "$/env.json";
import { getBackendURL } from "$/utils/state";

const ACK_EVERY = 32 * 1024;
const ACK_DELAY_MS = 40;
const SILENCE_MS = 75 * 1000; // the server pings every 20 s
const FATAL = { 4400: true, 4401: true, 4403: true, 4404: true, 4409: true, 4410: true };
const ACCESS_ENDED = 4410; // signed out, revoked, expired, or no longer allowed here

export function randomId() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID().replace(/-/g, "");
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

export function tabClientId() {
  // Per browser tab, kept across reloads: it is how the server recognizes the
  // driver's seat when the same tab reconnects.
  let id = window.sessionStorage.getItem("envhub.terminal.client");
  if (!id) {
    id = randomId();
    window.sessionStorage.setItem("envhub.terminal.client", id);
  }
  return id;
}

export function terminalURL(environmentId, params) {
  const url = getBackendURL(env.EVENT);
  url.pathname = `/ws/terminal/${environmentId}`;
  url.search = new URLSearchParams(params).toString();
  return url.toString();
}

export function apiURL(path) {
  // The API lives on the backend's origin (the page's own in production).
  const base = getBackendURL(env.EVENT);
  base.protocol = base.protocol === "wss:" ? "https:" : "http:";
  return new URL(path, base.origin).toString();
}

export class TerminalLink {
  constructor({ environmentId, session, watch, container, term, onState }) {
    this.environmentId = environmentId;
    this.session = session;
    this.watch = watch;
    this.container = container || "";
    this.term = term;
    this.onState = onState;
    this.client = tabClientId();
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    this.role = "viewer";
    this.retryTimer = null;
    this.silenceTimer = null;
    this.encoder = new TextEncoder();
    this.onOnline = () => this.reconnectNow();
    window.addEventListener("online", this.onOnline);
  }

  connect() {
    if (this.stopped) return;
    const { cols, rows } = this.term;
    const params = { session: this.session, client: this.client, mode: this.watch ? "watch" : "drive", cols, rows };
    if (this.container) params.container = this.container;
    const ws = new WebSocket(terminalURL(this.environmentId, params));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.received = 0;
    this.rendered = 0;
    this.acked = 0;
    this.onState({ status: this.attempt ? "reconnecting" : "connecting" });
    ws.onmessage = (event) => this.message(ws, event);
    ws.onclose = (event) => this.closed(ws, event);
    ws.onerror = () => {};
    this.heard();
  }

  heard() {
    clearTimeout(this.silenceTimer);
    // A socket that went quiet (a proxy dropped it without a close) is replaced.
    this.silenceTimer = setTimeout(() => this.ws?.close(4000, "silent"), SILENCE_MS);
  }

  message(ws, event) {
    if (ws !== this.ws) return;
    this.heard();
    if (typeof event.data !== "string") {
      const bytes = new Uint8Array(event.data);
      this.received += bytes.length;
      const upto = this.received;
      this.term.write(bytes, () => this.rendered_(ws, upto));
      return;
    }
    const msg = JSON.parse(event.data);
    switch (msg.type) {
      case "hello":
        this.attempt = 0;
        this.role = msg.role;
        this.onState({
          status: "connected", role: msg.role, mayDrive: msg.may_drive, you: msg.you,
          session: msg.session, exitCode: null, reason: "", restarting: false, where: msg.environment + (msg.container ? ` · ${msg.container}` : ""),
        });
        break;
      case "reset":
        this.term.reset();
        this.fitTo(msg.cols, msg.rows);
        break;
      case "size":
        this.fitTo(msg.cols, msg.rows);
        break;
      case "role":
        this.role = msg.role;
        this.onState({ role: msg.role, mayDrive: msg.may_drive });
        this.onState({ resize: true });
        break;
      case "presence":
        this.onState({ participants: msg.participants, driverPresent: msg.driver_present });
        break;
      case "ping":
        this.send({ type: "pong", seq: msg.seq });
        break;
      case "exit":
        // restarting: the envhub process holding the shell stopped (an upgrade, a scale-down).
        this.stopped = true;
        this.onState({ status: "ended", exitCode: msg.code, reason: msg.reason, restarting: !!msg.restarting });
        break;
      case "error":
        this.onState({ error: msg.message, errorCode: msg.code });
        break;
      default:
        break;
    }
  }

  rendered_(ws, upto) {
    if (ws !== this.ws) return;
    this.rendered = upto;
    if (this.rendered - this.acked >= ACK_EVERY) {
      this.ack();
    } else if (!this.ackTimer) {
      this.ackTimer = setTimeout(() => this.ack(), ACK_DELAY_MS);
    }
  }

  ack() {
    clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (this.rendered > this.acked) {
      this.acked = this.rendered;
      this.send({ type: "ack", bytes: this.acked });
    }
  }

  fitTo(cols, rows) {
    // Viewers show the driver's exact size; the driver's own size follows its window.
    if (this.role === "driver") {
      this.onState({ resize: true });
    } else if (cols && rows && (cols !== this.term.cols || rows !== this.term.rows)) {
      this.term.resize(cols, rows);
    }
  }

  closed(ws, event) {
    if (ws !== this.ws) return;
    clearTimeout(this.silenceTimer);
    this.ws = null;
    if (this.stopped) return;
    if (FATAL[event.code]) {
      // Never retried: the same request would be refused the same way.
      this.stopped = true;
      if (event.code === ACCESS_ENDED) {
        this.onState({ status: "access_ended", reason: event.reason });
        return;
      }
      const reason = event.code === 4409 ? "This session was opened in another tab." : event.reason;
      this.onState({ status: "refused", reason: reason || `refused (${event.code})` });
      return;
    }
    this.attempt += 1;
    const delay = Math.min(10000, 500 * 2 ** Math.min(this.attempt - 1, 5)) * (0.75 + Math.random() * 0.5);
    this.onState({ status: "reconnecting", retryIn: Math.round(delay / 1000), attempt: this.attempt });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  send(obj) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  input(data) {
    if (this.role !== "driver" || this.ws?.readyState !== WebSocket.OPEN) return;
    this.ws.send(typeof data === "string" ? this.encoder.encode(data) : data);
  }

  resize(cols, rows) {
    if (this.role === "driver") this.send({ type: "resize", cols, rows });
  }

  dispose() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.silenceTimer);
    clearTimeout(this.ackTimer);
    window.removeEventListener("online", this.onOnline);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, "closed");
  }
}
