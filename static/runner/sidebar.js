// The sidebar and the session's actions: filter, relative times, drawer, title rename, menu, restart, shortcuts.
import { $, $all, el, page } from './dom.js';
import { elapsedText, relativeText } from './format.js';
import { showMessage } from './notices.js';

const ACTIVITY_POLL_MS = 5000;

export class SessionChrome {
  /* Callbacks: hasActiveRuns() (a restart waits for them), focusEditor() (returns false if it can't). */
  constructor({ hasActiveRuns, focusEditor }) {
    this.hasActiveRuns = hasActiveRuns;
    this.focusEditor = focusEditor;
    this.menu = $('#session-menu');
    this.shortcuts = $('#shortcuts');
    this.watchFilter();
    this.watchTitle();
    this.watchClassroom();
    refreshClocks();
    setInterval(refreshTimes, 15000);
    setInterval(refreshClocks, 1000);
    // Other sessions (other tabs, other devices): their runs show up within ACTIVITY_POLL_MS.
    setInterval(() => { if (document.visibilityState === 'visible') this.pollActivity(); }, ACTIVITY_POLL_MS);
    document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') this.pollActivity(); });
    document.addEventListener('keydown', (e) => this.keydown(e));
  }

  closeMenu() { if (this.menu) this.menu.open = false; }

  /* A click outside the session menu, or on one of its items (an export too), closes it. */
  clickedAt(node) {
    if (!this.menu || !this.menu.open) return;
    if (!this.menu.contains(node) || (node.closest && node.closest('.menu-items a, .menu-items button'))) this.menu.open = false;
  }

  /* The sidebar's and the menu's buttons (data-action); returns true if handled. */
  action(action) {
    if (action === 'open-drawer') setDrawer(true);
    else if (action === 'close-drawer') setDrawer(false);
    else if (action === 'edit-title') { const input = $('#title-input'); if (input) { input.focus(); input.select(); } }
    else if (action === 'restart') {
      this.closeMenu();
      if (this.hasActiveRuns()) { showMessage('Stop the running code first, then restart the sandbox.', 'busy'); return true; }
      const dialog = $('#restart-dialog');
      if (dialog) dialog.showModal();
    } else if (action === 'show-shortcuts') { this.closeMenu(); this.openShortcuts(); }
    else return false;
    return true;
  }

  openShortcuts() { if (this.shortcuts && !this.shortcuts.open) this.shortcuts.showModal(); }

  keydown(e) {
    const t = e.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
    if (e.key === 'Escape') {
      if (this.menu && this.menu.open) { this.menu.open = false; $('summary', this.menu).focus(); }
      if (document.body.classList.contains('drawer-open')) setDrawer(false);
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === '?') { e.preventDefault(); this.openShortcuts(); }
    else if (e.key === '/' && this.focusEditor()) e.preventDefault();
    else if (e.key === '[' || e.key === ']') {
      // The watch view's previous / next student (a link, absent or disabled at the ends).
      const link = $(e.key === '[' ? 'a#student-prev' : 'a#student-next');
      if (link) { e.preventDefault(); window.location.assign(link.href); }
    }
  }

  /* The server named the session (from its first run): show it unless the user is editing the title. */
  titleChanged(title) {
    const input = $('#title-input');
    if (input && document.activeElement !== input) { input.value = title; this.savedTitle = title; }
    showTitle(title);
  }

  /* The session's own runs: `since` (ms) of the oldest one going, or null. Shows the sidebar's dot and
     clock, and moves the session to the top when a run starts. */
  sessionActivity(since) {
    const current = $('#session-list a[aria-current="page"]');
    if (!current) return;
    const dot = $('.running-dot', current);
    const clock = $('.running-elapsed', current);
    const running = since !== null;
    if (dot) dot.hidden = !running;
    if (running !== !!this.wasRunning) {
      this.wasRunning = running;
      const time = $('time[data-relative]', current);
      if (time) { time.setAttribute('datetime', new Date().toISOString()); time.textContent = relativeText(new Date()); }
      const li = current.parentElement;
      if (running && li.parentElement.firstElementChild !== li) li.parentElement.prepend(li);
    }
    if (clock) {
      clock.hidden = !running;
      if (running) clock.setAttribute('data-since', new Date(since).toISOString());
      else clock.removeAttribute('data-since');
      refreshClocks();
    }
  }

  /* The sidebar from the server's view of every session: dots, clocks, times, titles, and order. */
  pollActivity() {
    if (!page.activity_url || this.polling) return;
    this.polling = true;
    fetch(page.activity_url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then((r) => (r.ok ? r.json() : null))
      .then((body) => { if (body) applyActivity(body.sessions, $('#session-list')); })
      .catch(() => { /* offline: the next poll tries again */ })
      .then(() => { this.polling = false; });
  }

  watchFilter() {
    const filter = $('#session-filter');
    if (!filter) return;
    filter.addEventListener('input', () => {
      const q = filter.value.trim().toLowerCase();
      $all('#session-list li[data-title]').forEach((li) => { li.hidden = q !== '' && li.getAttribute('data-title').indexOf(q) === -1; });
    });
  }

  /* The header's class picker moves the session as soon as the owner picks (the form's POST; its
     Move button is for pages without JavaScript). */
  watchClassroom() {
    const picker = $('#session-classroom');
    if (!picker || !picker.form) return;
    picker.addEventListener('change', () => picker.form.requestSubmit());
  }

  /* The header's title renames the session in place: saved on Enter or blur, Esc puts it back. */
  watchTitle() {
    const titleForm = $('#title-form');
    const titleInput = $('#title-input');
    if (!titleForm || !titleInput) return;
    this.savedTitle = titleInput.value;
    const saveTitle = () => {
      const title = titleInput.value.trim();
      if (!title) { titleInput.value = this.savedTitle; return; }
      if (title === this.savedTitle) return;
      const body = new FormData(titleForm);
      fetch(titleForm.action, { method: 'POST', body: body, credentials: 'same-origin', headers: { Accept: 'application/json' } })
        .then((r) => r.json().then((j) => ({ ok: r.ok, body: j })))
        .then((res) => {
          if (!res.ok || !res.body.ok) throw new Error(res.body.message || 'The title could not be saved.');
          this.savedTitle = res.body.title;
          titleInput.value = this.savedTitle;
          showTitle(this.savedTitle);
        })
        .catch((err) => { titleInput.value = this.savedTitle; showMessage(err.message || 'The title could not be saved.', 'rename'); });
    };
    titleForm.addEventListener('submit', (e) => { e.preventDefault(); saveTitle(); titleInput.blur(); });
    titleInput.addEventListener('blur', saveTitle);
    titleInput.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { titleInput.value = this.savedTitle; titleInput.blur(); }
    });
  }
}

function applyActivity(sessions, list) {
  if (!list) return;
  const current = $('a[aria-current="page"]', list);
  const order = [];
  sessions.forEach((item) => {
    const dot = $('.running-dot[data-session-id="' + item.id + '"]', list);
    // A session this page hasn't listed (made since: through the API, or in another tab) gets an entry.
    const li = dot ? dot.closest('li') : sessionEntry(item, list);
    const link = $('a', li);
    order.push(li);
    if (item.unread_comments !== undefined) showUnreadCount($('.unread-count', li), item.unread_comments);
    if (link === current) return; // this session's own socket keeps it live
    dot.hidden = !item.is_running;
    const clock = $('.running-elapsed', li);
    if (clock) {
      clock.hidden = !item.is_running;
      if (item.running_since) clock.setAttribute('data-since', item.running_since);
      else clock.removeAttribute('data-since');
    }
    const time = $('time[data-relative]', li);
    if (time) { time.setAttribute('datetime', item.last_activity_at); time.textContent = relativeText(new Date(item.last_activity_at)); }
    $('.session-title', li).textContent = item.title;
    li.setAttribute('data-title', item.title.toLowerCase());
  });
  // Newest activity first, as the server orders them; entries it didn't list keep their place after.
  order.reverse().forEach((li) => list.prepend(li));
  refreshClocks();
}

/* A new sidebar entry for `item` (activity.json's shape), as the template renders one; text only. */
function sessionEntry(item, list) {
  const empty = $('.empty-list', list);
  if (empty) empty.remove();
  const li = el('li');
  li.setAttribute('data-title', item.title.toLowerCase());
  const link = el('a');
  link.href = item.url;
  const unread = el('span', 'unread-count');
  unread.title = "Comments you haven't seen";
  link.appendChild(unread);
  showUnreadCount(unread, item.unread_comments || 0);
  link.appendChild(el('span', 'session-title', item.title));
  const meta = el('span', 'session-meta');
  meta.appendChild(el('span', 'badge lang-' + item.language, item.language_label));
  if (item.kind === 'api') {
    const api = el('span', 'badge kind-api', 'API');
    api.title = 'Made through the E2B-compatible API';
    meta.appendChild(api);
  }
  if (item.classroom_name) {
    const cls = el('span', 'badge class-badge', item.classroom_name);
    cls.title = 'In the class ' + item.classroom_name + ': its teachers see it';
    meta.appendChild(cls);
  }
  const time = el('time');
  time.setAttribute('data-relative', '');
  meta.appendChild(time);
  const dot = el('span', 'running-dot');
  dot.setAttribute('data-session-id', item.id);
  dot.title = 'A run is going';
  dot.appendChild(el('span', 'visually-hidden', 'a run is going'));
  meta.appendChild(dot);
  meta.appendChild(el('span', 'running-elapsed'));
  link.appendChild(meta);
  li.appendChild(link);
  const filter = $('#session-filter');
  const q = filter ? filter.value.trim().toLowerCase() : '';
  li.hidden = q !== '' && li.getAttribute('data-title').indexOf(q) === -1;
  list.prepend(li);
  return li;
}

/* A sidebar entry's count of comments not seen yet (hidden at 0). */
export function showUnreadCount(badge, count) {
  if (!badge) return;
  const n = Math.max(0, count | 0);
  badge.setAttribute('data-unread', String(n));
  badge.textContent = String(n);
  badge.appendChild(el('span', 'visually-hidden', ' unread comment' + (n === 1 ? '' : 's')));
  badge.hidden = n === 0;
}

/* The title in the tab and in the sidebar's entry for this session. */
function showTitle(title) {
  document.title = title + ' · Sandpit';
  const heading = $('#title-text'); // a watcher's read-only header
  if (heading) heading.textContent = title;
  const current = $('#session-list a[aria-current="page"]');
  if (current) {
    $('.session-title', current).textContent = title;
    current.parentElement.setAttribute('data-title', title.toLowerCase());
  }
}

/* Each running session's elapsed time in the sidebar, from its data-since. */
function refreshClocks() {
  const now = Date.now();
  $all('.running-elapsed[data-since]').forEach((c) => {
    c.textContent = elapsedText(Math.max(0, now - Date.parse(c.getAttribute('data-since'))));
  });
}

function refreshTimes() {
  $all('time[data-relative]').forEach((t) => { t.textContent = relativeText(new Date(t.getAttribute('datetime'))); });
}

function setDrawer(open) {
  document.body.classList.toggle('drawer-open', open);
  const toggle = $('.drawer-toggle');
  if (toggle) toggle.setAttribute('aria-expanded', String(open));
  const scrim = $('.drawer-scrim');
  if (scrim) scrim.hidden = !open;
  if (open) {
    const first = $('#new-session');
    if (first) first.focus();
  } else if (toggle && document.activeElement && $('#sidebar').contains(document.activeElement)) toggle.focus();
}
