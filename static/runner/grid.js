// The class page's live grid ("Right now"): one row per student from the page's #grid-data, then from
// the class's grid.json every POLL_MS while the tab is visible, sorted by the column whose header
// button was pressed (stuck first until then). Without this script the server's table is right, by name.
import { el } from './dom.js';

const POLL_MS = 4000;
const STATE_ORDER = { running: 0, idle: 1, offline: 2 };
const collator = new Intl.Collator(undefined, { sensitivity: 'base', numeric: true });

const lastRun = (t) => (t.last_run_at ? Date.parse(t.last_run_at) : 0);
const progress = (t) => (t.assignments ? t.handed_in / t.assignments : -1);

// Each column: how two tiles compare ascending, and whether its first press sorts descending.
const SORTS = {
  name: { cmp: (a, b) => collator.compare(a.name, b.name) || collator.compare(a.username, b.username) },
  state: { cmp: (a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state] },
  last_run: { cmp: (a, b) => lastRun(a) - lastRun(b), descFirst: true },
  failures: { cmp: (a, b) => a.failures_in_row - b.failures_in_row, descFirst: true },
  error: { cmp: (a, b) => collator.compare(a.last_error, b.last_error) },
  progress: { cmp: (a, b) => progress(a) - progress(b), descFirst: true },
  stuck: { cmp: (a, b) => Number(a.stuck) - Number(b.stuck), descFirst: true },
};

function tieBreak(a, b) {
  return SORTS.stuck.cmp(b, a) || SORTS.failures.cmp(b, a) || SORTS.name.cmp(a, b);
}

function cell(tag, child, label) {
  const node = el(tag);
  if (label) node.dataset.label = label;
  if (typeof child === 'string') node.textContent = child;
  else node.appendChild(child);
  return node;
}

function buildRow(tile) {
  const row = el('tr', tile.stuck ? 'stuck' : null);
  row.dataset.studentId = String(tile.student_id);
  let name = document.createTextNode(tile.name);
  if (tile.watch_url) {
    name = el('a', null, tile.name);
    name.href = tile.watch_url;
  }
  const head = cell('th', name);
  head.scope = 'row';
  const state = el('span', 'grid-state', tile.state_text);
  state.dataset.state = tile.state;
  let when = document.createTextNode('never');
  if (tile.last_run_at) {
    when = el('time', null, tile.last_run_text);
    when.dateTime = tile.last_run_at;
  }
  const failures = cell('td', String(tile.failures_in_row), 'Failures in a row');
  failures.className = 'num';
  const stuck = cell('td', '', 'Stuck');
  if (tile.stuck) stuck.append(el('span', 'stuck-flag', 'Stuck'), ' ', el('span', 'muted', tile.stuck_reason));
  else stuck.textContent = '–';
  row.append(head, cell('td', state, 'State'), cell('td', when, 'Last run'), failures,
    cell('td', tile.last_error ? el('code', 'ename', tile.last_error) : '–', 'Last error'),
    cell('td', tile.progress_text, 'Assignments'), stuck);
  return row;
}

function createGrid(table) {
  const body = table.querySelector('tbody');
  const rows = new Map(); // student id -> { key, row }
  let tiles = [];
  let sort = { column: 'stuck', descending: true };

  function sorted() {
    const { cmp } = SORTS[sort.column];
    return tiles.slice().sort((a, b) => (sort.descending ? cmp(b, a) : cmp(a, b)) || tieBreak(a, b));
  }

  function render() {
    const focused = document.activeElement;
    const focusedRow = focused && body.contains(focused) ? focused.closest('tr') : null;
    const focusId = focusedRow ? focusedRow.dataset.studentId : null;
    const seen = new Set();
    const ordered = sorted().map((tile) => {
      const id = String(tile.student_id);
      const key = JSON.stringify(tile);
      seen.add(id);
      const known = rows.get(id);
      if (known && known.key === key) return known.row;
      const row = buildRow(tile);
      rows.set(id, { key, row });
      return row;
    });
    rows.forEach((_, id) => { if (!seen.has(id)) rows.delete(id); });
    if (!ordered.length) return; // no students: keep the server's "share the join code" row
    const current = Array.prototype.slice.call(body.children);
    if (current.length !== ordered.length || current.some((row, i) => row !== ordered[i])) body.replaceChildren(...ordered);
    if (focusId !== null && rows.has(focusId) && document.activeElement !== focused) {
      // A moved or rebuilt row loses focus: give it back to that student's link.
      const again = body.contains(focused) ? focused : rows.get(focusId).row.querySelector('a');
      if (again) again.focus();
    }
  }

  function showSort() {
    table.querySelectorAll('th[aria-sort]').forEach((th) => {
      const button = th.querySelector('button[data-sort]');
      const on = button.dataset.sort === sort.column;
      th.setAttribute('aria-sort', on ? (sort.descending ? 'descending' : 'ascending') : 'none');
      let arrow = button.querySelector('.sort-arrow');
      if (!arrow) {
        arrow = el('span', 'sort-arrow');
        arrow.setAttribute('aria-hidden', 'true');
        button.appendChild(arrow);
      }
      arrow.textContent = on ? (sort.descending ? ' ▼' : ' ▲') : '';
    });
  }

  table.querySelectorAll('button[data-sort]').forEach((button) => {
    button.addEventListener('click', () => {
      const column = button.dataset.sort;
      sort = column === sort.column
        ? { column, descending: !sort.descending }
        : { column, descending: Boolean(SORTS[column].descFirst) };
      showSort();
      render();
    });
  });

  function show(data) {
    tiles = data.students;
    const count = document.getElementById('grid-stuck');
    if (count) {
      const text = data.stuck ? `· ${data.stuck} stuck` : '';
      if (count.textContent !== text) count.textContent = text;
    }
    render();
  }

  function refresh() {
    fetch(table.dataset.gridUrl, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      .then((response) => (response.ok ? response.json() : null))
      .then((data) => { if (data) show(data); })
      .catch(() => { /* offline for a moment: the next poll tries again */ });
  }

  showSort();
  const first = document.getElementById('grid-data');
  if (first) show(JSON.parse(first.textContent));
  else refresh();
  setInterval(() => { if (document.visibilityState === 'visible') refresh(); }, POLL_MS);
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') refresh(); });
}

const table = document.getElementById('class-grid');
if (table) createGrid(table);
