// The WebSocket session: sign-in with `auth` + `since` (docs/protocol.md, section 5),
// request/answer matching by `id`, keepalive pings, and reconnection with exponential
// backoff and full jitter, or after the wait the server names (a draining server's
// `shutting_down`, a busy one's refusal of the sign-in). Unacknowledged sends are re-sent
// with their original `client_msg_id` after every reconnect, so a send is stored once
// whatever happens.

const PING_EVERY_MS = 25_000;
const PONG_WITHIN_MS = 10_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
// Longest wait a draining server's `retry_after_ms` may impose.
const RESTART_WAIT_MAX_MS = 60_000;
// Longest wait a refused sign-in's `retry_after_ms` may impose (a busy gateway names up
// to 2 minutes), and the most jitter added on top of it, as a share of the wait: clients
// refused together, told the same, do not come back together.
const BUSY_WAIT_MAX_MS = 120_000;
const BUSY_JITTER = 0.2;

/**
 * A new idempotency key for a send: the time in milliseconds (12 hex digits) and then
 * random digits. Keys that start with the time are stored at the right edge of the
 * server's retry index, the cheapest place to write (docs/protocol.md, `client_msg_id`).
 */
export function newClientMsgId() {
  const random = crypto.randomUUID ? crypto.randomUUID() : Math.random().toString(16).slice(2);
  return `${Date.now().toString(16).padStart(12, '0')}-${random}`;
}

export class Connection {
  /**
   * @param {object} o
   * @param {string} o.token bearer token
   * @param {() => Record<string, number>} o.since last seq held per conversation
   * @param {(frame: object) => void} o.onFrame every frame that is not an answer
   * @param {(state: string, detail?: object) => void} o.onState 'connecting', 'online',
   *   'offline' (with {retryInMs, retryAt, restarting, busy}), 'unauthenticated'
   */
  constructor({ token, since, onFrame, onState }) {
    this.token = token;
    this.since = since;
    this.onFrame = onFrame;
    this.onState = onState;
    this.ws = null;
    this.nextId = 1;
    this.waiting = new Map(); // request id -> {resolve, reject}
    this.pendingSends = new Map(); // client_msg_id -> send frame, until acked
    this.attempt = 0;
    this.retryTimer = null;
    this.restartInMs = null; // the draining server's retry_after_ms, until the close
    // A refused sign-in's {code, retryAfterMs} (`unavailable`: the server is busy;
    // `rate_limited`: too many failed sign-ins from here), until the close.
    this.refusal = null;
    this.busyUntil = 0; // no attempt before this time (Date.now() ms): the server said so
    this.pingTimer = null;
    this.pongTimer = null;
    this.stopped = false;
    this.online = false;
    this.onBrowserOnline = () => this.reconnectNow();
    window.addEventListener('online', this.onBrowserOnline);
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onBrowserOnline);
    clearTimeout(this.retryTimer);
    this.stopTimers();
    if (this.ws) this.ws.close(1000);
  }

  open() {
    clearTimeout(this.retryTimer);
    this.onState('connecting');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.ws = ws;
    let signedIn = false;
    ws.addEventListener('open', () => {
      ws.send(JSON.stringify({ type: 'auth', token: this.token, since: this.since() }));
    });
    ws.addEventListener('message', (event) => {
      if (ws !== this.ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === 'welcome') {
        signedIn = true;
        this.online = true;
        this.startTimers();
      }
      if (frame.type === 'synced') {
        this.attempt = 0;
        this.onFrame(frame);
        this.onState('online');
        // Anything not acked before the drop may or may not be stored: same key again.
        for (const send of this.pendingSends.values()) this.rawSend(send);
        return;
      }
      if (frame.type === 'error' && frame.code === 'shutting_down') {
        // The gateway is going away and says when to come back (spread so that its
        // clients do not all arrive at the other gateways at once).
        this.restartInMs = Number.isFinite(frame.retry_after_ms) ? frame.retry_after_ms : null;
      }
      // The sign-in (or the session's start) refused for now, with the time to come back:
      // a busy server, or too many failed sign-ins from this address. Not an error to
      // show: the close that follows waits as told.
      const retryable = frame.code === 'unavailable' || frame.code === 'rate_limited';
      if (frame.type === 'error' && !frame.id && retryable && Number.isFinite(frame.retry_after_ms)) {
        this.refusal = { code: frame.code, retryAfterMs: frame.retry_after_ms };
        return;
      }
      // A bad token at sign-in, or later a sign-out elsewhere or a disabled account:
      // reconnecting with this token cannot work.
      if (frame.type === 'error' && frame.code === 'unauthenticated') {
        this.stopped = true;
        this.onState('unauthenticated');
        return;
      }
      if (frame.type === 'pong') clearTimeout(this.pongTimer);
      if (frame.type === 'ack') this.pendingSends.delete(frame.client_msg_id);
      if (frame.id && this.waiting.has(frame.id)) {
        const { resolve, reject } = this.waiting.get(frame.id);
        this.waiting.delete(frame.id);
        if (frame.type === 'error') reject(Object.assign(new Error(frame.message), { code: frame.code }));
        else resolve(frame);
        if (frame.type !== 'ack') return;
      }
      this.onFrame(frame);
    });
    ws.addEventListener('close', (event) => {
      if (ws !== this.ws) return;
      this.online = false;
      this.stopTimers();
      for (const { reject } of this.waiting.values()) reject(Object.assign(new Error('offline'), { code: 'offline' }));
      this.waiting.clear();
      if (this.stopped) return;
      // A draining server names the delay, and so does one refusing the sign-in (at
      // least that long, plus jitter); a slow session comes back soon, spread out;
      // anything else backs off.
      const restarting = event.code === 1012;
      const refusal = event.code === 1013 ? this.refusal : null;
      const soon = restarting || (event.code === 1013 && signedIn);
      const ceiling = soon ? 2000 : Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
      let delay = Math.floor(Math.random() * ceiling);
      if (restarting && this.restartInMs !== null) delay = Math.min(this.restartInMs, RESTART_WAIT_MAX_MS);
      if (refusal) {
        const wait = Math.min(refusal.retryAfterMs, BUSY_WAIT_MAX_MS);
        delay = Math.min(wait + Math.floor(Math.random() * wait * BUSY_JITTER), BUSY_WAIT_MAX_MS);
      }
      this.restartInMs = null;
      this.refusal = null;
      this.attempt += 1;
      const retryAt = Date.now() + delay;
      this.busyUntil = refusal ? retryAt : 0;
      const busy = refusal ? refusal.code : null;
      this.onState('offline', { retryInMs: delay, retryAt, restarting, busy });
      this.retryTimer = setTimeout(() => this.open(), delay);
    });
  }

  /**
   * Skips the wait of the backoff (the browser says the network is back), but not a wait
   * the server asked for.
   */
  reconnectNow() {
    if (this.stopped || this.online || Date.now() < this.busyUntil) return;
    if (this.ws && this.ws.readyState === WebSocket.CONNECTING) return;
    this.open();
  }

  startTimers() {
    this.stopTimers();
    this.pingTimer = setInterval(() => {
      this.rawSend({ type: 'ping', id: `k${this.nextId++}` });
      clearTimeout(this.pongTimer);
      // No pong in time: the connection is dead even if the browser has not noticed.
      this.pongTimer = setTimeout(() => this.ws && this.ws.close(4000, 'no pong'), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  stopTimers() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  rawSend(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.online) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  /** Sends a request and resolves with its answer (rejects with the error frame). */
  request(frame) {
    const id = `r${this.nextId++}`;
    return new Promise((resolve, reject) => {
      if (!this.rawSend({ ...frame, id })) {
        reject(Object.assign(new Error('You are offline'), { code: 'offline' }));
        return;
      }
      this.waiting.set(id, { resolve, reject });
    });
  }

  /** Fire and forget (typing, read): lost while offline, which is fine for these. */
  notify(frame) {
    this.rawSend(frame);
  }

  /** Queues a message send; it is re-sent after reconnects until acked. */
  sendMessage(conversationId, clientMsgId, body) {
    const frame = { type: 'send', id: `m${this.nextId++}`, conversation_id: conversationId, client_msg_id: clientMsgId, body };
    this.pendingSends.set(clientMsgId, frame);
    this.rawSend(frame);
  }
}
