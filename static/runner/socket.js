// The session's websocket: reconnects, resumes from the last contiguous chunk (replay), drops duplicates and
// hands frames over in arrival order, batched once per animation frame (protocol: docs/ARCHITECTURE.md).
import { showToast } from './notices.js';

const PING_MS = 25000;

export class Socket {
  /* `wsPath` is the session's socket path; `resume` ({execution_id, index} or null) the last contiguous output
     the page already holds. Callbacks: onFrames(frames) gets each batch; onOpen(); onClose() on any close;
     onRefused(code) when the server closes for good (4403 not allowed, 4404 no such session). */
  constructor(wsPath, resume, { onFrames, onOpen, onClose, onRefused }) {
    this.wsPath = wsPath;
    this.resume = resume || null;
    this.resyncing = false; // set on a gap until the socket reopens with the resume point
    this.resyncedFrom = null; // the last point a gap re-synced from
    this.connected = false;
    this.closedForGood = false;
    this.ws = null;
    this.queue = [];
    this.scheduled = false;
    this.onFrames = onFrames;
    this.onOpen = onOpen;
    this.onRefused = onRefused;
    this.onClose = onClose || (() => {});
  }

  url() {
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    // Always resume from a point: with none yet, from the start (the replay is then the whole, small, session).
    const from = this.resume || { execution_id: 0, index: -1 };
    return scheme + location.host + this.wsPath +
      '?after_execution=' + encodeURIComponent(from.execution_id) + '&after_index=' + encodeURIComponent(from.index);
  }

  connect() {
    if (!this.wsPath || !window.ReconnectingWebSocket) return;
    const ws = this.ws = new window.ReconnectingWebSocket(() => this.url(), [], {
      // Exponential backoff with jitter: 0.5–1.5 s, ×1.6 per failure, at most 10 s.
      minReconnectionDelay: 500 + Math.random() * 1000,
      maxReconnectionDelay: 10000,
      reconnectionDelayGrowFactor: 1.6,
      connectionTimeout: 5000,
      maxEnqueuedMessages: 0 // never send a run late: the composer keeps the code instead
    });
    ws.addEventListener('open', () => {
      this.connected = true;
      this.resyncing = false;
      document.body.dataset.socket = 'open';
      showToast(false);
      this.onOpen();
    });
    ws.addEventListener('close', (event) => {
      this.connected = false;
      document.body.dataset.socket = 'closed';
      this.onClose();
      if (event.code === 4403 || event.code === 4404) {
        this.closedForGood = true;
        ws.close();
        showToast(false);
        this.onRefused(event.code);
        return;
      }
      if (!this.closedForGood) showToast(true);
    });
    ws.addEventListener('message', (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame && typeof frame === 'object') this.enqueue(frame);
    });
    window.addEventListener('offline', () => { if (!this.closedForGood) { showToast(true); ws.reconnect(); } });
    window.addEventListener('online', () => this.reconnect());
    setInterval(() => { if (this.connected) ws.send(JSON.stringify({ type: 'ping' })); }, PING_MS);
  }

  reconnect() {
    if (this.ws && !this.closedForGood) this.ws.reconnect();
  }

  /* Send a frame now, or return false when not connected (nothing is queued for later). */
  send(frame) {
    if (!this.ws || !this.connected) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  enqueue(frame) {
    this.queue.push(frame);
    if (this.scheduled) return;
    this.scheduled = true;
    if (document.hidden) setTimeout(() => this.flush(), 50);
    else requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.scheduled = false;
    const frames = this.queue;
    this.queue = [];
    this.onFrames(frames);
  }

  /* Whether output chunk `index` of `turn` is new and next in line. Chunks already shown (server render or an
     earlier replay) are dropped; on a gap the socket reconnects from the turn's last contiguous chunk and the
     replay fills it, so nothing is lost or doubled. */
  admit(turn, index) {
    if (index <= turn.lastIndex) return false;
    if (this.resyncing) return false; // a replay from the resume point is on its way
    if (index > turn.lastIndex + 1) {
      // Already re-synced from this very point and the replay still skips: the server never stored those
      // chunks (its database was down past its retries), so show what follows rather than loop.
      const from = this.resyncedFrom;
      if (from && from.execution_id === turn.id && from.index === turn.lastIndex) return true;
      this.resume = this.resyncedFrom = { execution_id: turn.id, index: turn.lastIndex };
      this.resyncing = true;
      this.reconnect();
      return false;
    }
    return true;
  }

  /* The page now holds output chunk `index` of execution `executionId`. */
  advance(executionId, index) {
    if (!this.resume || executionId >= this.resume.execution_id) this.resume = { execution_id: executionId, index: index };
  }

  /* A run finished: a later reconnect need not replay anything before its end. */
  finished(turn) {
    if (this.resume === null || turn.id > this.resume.execution_id) this.resume = { execution_id: turn.id, index: turn.lastIndex };
  }
}
