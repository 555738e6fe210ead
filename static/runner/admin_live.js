// The admin's live sandboxes (/admin/live/): poll live.json every LIVE_STATS_S while the tab is
// visible and bring the page up to date in place. Rows are matched by lease id, so a reason being
// typed into a row's "why" field survives the refresh; rows are not reordered while focus is in
// the table. The server-rendered page is right without this script (sorting is by links).
import { el } from './dom.js';

const SANDBOX_COLUMNS = ['owner', 'session', 'class', 'backend', 'process', 'started', 'activity', 'cpu', 'memory', 'run', 'cost'];

function link(href, text, title, cls) {
  const a = el('a', cls || '', text);
  a.href = href;
  if (title) a.title = title;
  return a;
}

/* One sandbox cell's content, as templates/admin/runner/live.html renders it. */
function cellContent(key, r) {
  switch (key) {
    case 'owner': return [link(r.owner_url, r.owner, r.owner_title)];
    case 'session': {
      const parts = [link(r.session_url, r.session_title, 'View it as a chat')];
      if (r.api) parts.push(document.createTextNode(' '), el('span', 'live-badge', 'API'));
      return parts;
    }
    case 'class': return [r.classroom || '—'];
    case 'backend': return [r.backend];
    case 'process': return [r.process];
    case 'started': return [r.started];
    case 'activity': return [r.activity];
    case 'cpu': return [r.cpu_text];
    case 'memory': return [r.memory_text];
    case 'run': return r.run ? [link(r.run.url, r.run.text, '', 'run-' + r.run.status)] : ['—'];
    case 'cost': return [r.cost_text];
    default: return [''];
  }
}

const TITLES = { backend: (r) => r.sandbox_id, process: (r) => 'boot id ' + r.boot_id, started: (r) => r.started_title };

function fillCell(cell, key, r) {
  const parts = cellContent(key, r).map((p) => (typeof p === 'string' ? document.createTextNode(p) : p));
  const same = cell.textContent === parts.map((p) => p.textContent).join('') && key !== 'owner' && key !== 'session' && key !== 'run';
  if (!same) cell.replaceChildren(...parts);
  if (TITLES[key]) cell.title = TITLES[key](r);
}

function actionsCell(r, query, csrf) {
  const cell = el('td', 'live-actions');
  const form = el('form', 'usage-action');
  form.method = 'post';
  form.action = r.kill_url + '?' + query;
  const token = el('input');
  token.type = 'hidden';
  token.name = 'csrfmiddlewaretoken';
  token.value = csrf;
  const reason = el('input');
  reason.type = 'text';
  reason.name = 'reason';
  reason.required = true;
  reason.maxLength = 2000;
  reason.placeholder = 'why';
  reason.setAttribute('aria-label', "Why, for " + r.owner + "'s sandbox");
  const kill = el('button', 'live-kill', 'Kill');
  kill.type = 'submit';
  kill.title = 'Close this sandbox: its run ends, its variables are gone';
  form.append(token, reason, kill);
  cell.appendChild(form);
  return cell;
}

/* The Stop button follows the run in progress (and its id). */
function syncStop(form, r, query) {
  let stop = form.querySelector('button.live-stop');
  if (!r.run) { if (stop) stop.remove(); return; }
  if (!stop) {
    stop = el('button', 'live-stop', 'Stop run');
    stop.type = 'submit';
    stop.title = 'Stop the run; the sandbox and its variables stay';
    form.appendChild(stop);
  }
  stop.setAttribute('formaction', r.stop_url + '?' + query);
}

function newRow(r, query, csrf) {
  const tr = el('tr');
  tr.setAttribute('data-lease', String(r.lease_id));
  SANDBOX_COLUMNS.forEach((key) => {
    const cell = el(key === 'owner' ? 'th' : 'td', ['cpu', 'memory', 'cost'].includes(key) ? 'num' : '');
    if (key === 'owner') cell.scope = 'row';
    cell.setAttribute('data-col', key);
    tr.appendChild(cell);
  });
  tr.appendChild(actionsCell(r, query, csrf));
  return tr;
}

function emptyRow(colspan, text) {
  const tr = el('tr', 'live-empty');
  const td = el('td', '', text);
  td.colSpan = colspan;
  tr.appendChild(td);
  return tr;
}

function renderSandboxes(table, rows, query, csrf) {
  const body = table.tBodies[0];
  const existing = new Map();
  body.querySelectorAll('tr[data-lease]').forEach((tr) => existing.set(tr.getAttribute('data-lease'), tr));
  body.querySelectorAll('tr.live-empty').forEach((tr) => tr.remove());
  const ordered = rows.map((r) => {
    const key = String(r.lease_id);
    const tr = existing.get(key) || newRow(r, query, csrf);
    existing.delete(key);
    tr.classList.toggle('stale', !r.process_alive);
    SANDBOX_COLUMNS.forEach((col) => fillCell(tr.querySelector(`[data-col="${col}"]`), col, r));
    syncStop(tr.querySelector('form'), r, query);
    return tr;
  });
  existing.forEach((tr) => tr.remove()); // ended since the last look
  const typing = body.contains(document.activeElement);
  ordered.forEach((tr, i) => {
    if (!tr.parentNode) body.appendChild(tr);
    else if (!typing && body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] || null);
  });
  if (!rows.length) body.appendChild(emptyRow(SANDBOX_COLUMNS.length + 1, 'No sandbox is live.'));
}

function renderProcesses(table, processes) {
  const rows = processes.map((p) => {
    const tr = el('tr', (p.alive ? '' : 'stale') + (p.full ? ' full' : ''));
    tr.setAttribute('data-boot', p.boot_id);
    const head = el('th', '', p.process + ' ');
    head.scope = 'row';
    head.title = 'boot id ' + p.boot_id;
    head.appendChild(el('span', 'quiet', p.boot_short));
    tr.appendChild(head);
    const cells = [
      [p.heartbeat + (p.alive ? '' : ' (silent: taken for dead)'), 'heartbeat'], [p.started], [p.backend],
      [p.live_text + (p.full ? ' · full' : '')], [p.memory_text], [p.left_text], [p.warm_text], [String(p.queued)], [p.stats],
    ];
    cells.forEach(([text, cls]) => tr.appendChild(el('td', cls || '', text)));
    return tr;
  });
  table.tBodies[0].replaceChildren(...(rows.length ? rows : [emptyRow(10, 'No server process has a heartbeat.')]));
}

function renderWaiting(table, waiting) {
  const rows = waiting.map((w) => {
    const tr = el('tr');
    const head = el('th', '', w.owner);
    head.scope = 'row';
    const session = el('td');
    session.appendChild(link(w.session_url, w.session_title));
    tr.append(head, session, el('td', '', w.boot_short), el('td', '', w.waited));
    return tr;
  });
  table.tBodies[0].replaceChildren(...(rows.length ? rows : [emptyRow(4, 'Nobody is waiting for a sandbox.')]));
}

function plural(n, one, many) { return n === 1 ? one : many; }

function renderSummary(node, s) {
  const strong = (text) => el('strong', '', String(text));
  node.replaceChildren(
    strong(s.live), ` live ${plural(s.live, 'sandbox', 'sandboxes')}${s.by_backend ? ` (${s.by_backend})` : ''} on ${s.processes} ${plural(s.processes, 'process', 'processes')} · `,
    strong(s.running), ` ${plural(s.running, 'run', 'runs')} running · ${s.queued} queued · ${s.waiting} waiting for room`,
  );
}

export function apply(root, data) {
  const query = root.getAttribute('data-query') || '';
  const csrf = (document.getElementById('live-csrf') || {}).value || '';
  renderSummary(document.getElementById('live-summary'), data.summary);
  renderProcesses(document.getElementById('live-processes'), data.processes);
  renderWaiting(document.getElementById('live-waiting'), data.waiting);
  renderSandboxes(document.getElementById('live-table'), data.sandboxes, query, csrf);
  const updated = document.getElementById('live-updated');
  if (updated) updated.textContent = `Updated at ${data.updated}.`;
  root.setAttribute('data-updated', data.now);
}

function start() {
  const root = document.querySelector('.live[data-live-url]');
  if (!root) return;
  const everyMs = Math.max(1, Number(root.getAttribute('data-every-s')) || 5) * 1000;
  let busy = false;
  const refresh = () => {
    if (busy || document.visibilityState !== 'visible') return;
    busy = true;
    fetch(root.getAttribute('data-live-url'), { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      .then((response) => (response.ok ? response.json() : null))
      .then((data) => { if (data) apply(root, data); })
      .catch(() => { /* offline for a moment: the next poll tries again */ })
      .finally(() => { busy = false; });
  };
  setInterval(refresh, everyMs);
  document.addEventListener('visibilitychange', refresh);
}

start();
