// The usage meter next to Run: the user's usage against each of their limits, refreshed from
// /account/usage.json after each run ends or a run is refused for a quota; amber from 80%.
import { el } from './dom.js';

export class UsageMeter {
  constructor(node, url) {
    this.node = node;
    this.url = url;
    this.pending = null;
  }

  /* Frames from the socket: refresh once the burst has settled, if a run ended or was refused. */
  noteFrames(frames) {
    if (!this.node || !this.url) return;
    const relevant = frames.some((f) => f.type === 'execution.finished' || (f.type === 'error' && f.code === 'quota'));
    if (!relevant) return;
    clearTimeout(this.pending);
    this.pending = setTimeout(() => this.refresh(), 300);
  }

  refresh() {
    return fetch(this.url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then((response) => (response.ok ? response.json() : null))
      .then((body) => { if (body) this.render(body.limits || []); })
      .catch(() => {}); // the meter is a hint; the server enforces the limits
  }

  render(limits) {
    this.node.replaceChildren(...limits.map((q) =>
      el('span', 'usage-limit' + (q.warn ? ' warn' : ''), q.warn ? `${q.text} · ${q.percent}% used` : q.text)));
    this.node.hidden = limits.length === 0;
  }
}
