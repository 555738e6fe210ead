// Teachers' comments under runs: applies comment.added / comment.changed / comment.deleted frames
// (upsert by comment_id, keeping the highest version, so repeats and replays are harmless), and for
// a teacher the comment box (post, reuse a snippet) and the author's edit and delete, all by fetch.
// On the student's own page, an unread comment (`.unread`, a "new" badge, a marker on its run) is
// marked seen (`.seen`, the marker goes) once at least half of it, or 120 px, has been on screen
// while the tab is visible. A comment's `html` comes from the server already rendered and sanitised by nh3.
import { $, $all, el } from './dom.js';
import { showMessage } from './notices.js';
import { showUnreadCount } from './sidebar.js';

const SEEN_FLUSH_MS = 400;

function csrfToken() {
  const input = $('input[name="csrfmiddlewaretoken"]');
  return input ? input.value : '';
}

/* POST a form's fields as the page's fetch does elsewhere; resolves to the JSON answer. */
async function postForm(url, fields) {
  const body = new URLSearchParams(fields);
  const response = await fetch(url, {
    method: 'POST',
    body: body,
    credentials: 'same-origin',
    headers: { Accept: 'application/json', 'X-CSRFToken': csrfToken() }
  });
  let answer = null;
  try { answer = await response.json(); } catch (e) { answer = null; }
  if (!response.ok || !answer || !answer.ok) {
    throw new Error((answer && answer.message) || (response.status === 404 ? 'That run or comment is gone.' : 'The comment could not be saved.'));
  }
  return answer;
}

function formatWhen(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes());
}

/* A status line's text as the "Comment on" list shows it (StatusParts.plain in selectors/sessions.py):
   the symbol dropped, "ok" for a success. */
export function plainStatus(text) {
  const glyph = text.charAt(0);
  if (glyph === '✓') return 'ok' + text.slice(1);
  if ('✗⏱■⚠'.indexOf(glyph) !== -1) return text.slice(1).trim();
  return text;
}

function inView(node, container) {
  const r = node.getBoundingClientRect();
  const top = container ? Math.max(0, container.getBoundingClientRect().top) : 0;
  const bottom = container ? Math.min(window.innerHeight, container.getBoundingClientRect().bottom) : window.innerHeight;
  return r.bottom > top && r.top < bottom;
}

export class Comments {
  /* `page` is the page data: comment_url, comment_edit_url and comment_delete_url (teachers only),
     and `access` ("owner": the student's own page, where a new comment is marked and announced). */
  constructor(page) {
    this.page = page;
    this.box = $('#comment-box');
    if (this.box) this.wireBox();
    document.addEventListener('submit', (e) => this.submitted(e));
    if (page.access === 'owner' && page.comments_seen_url && 'IntersectionObserver' in window) this.watchSeen();
  }

  /* The owner's page: unread comments that come into view are posted as seen, a batch at a time. */
  watchSeen() {
    this.seenQueue = new Set();
    this.observer = new IntersectionObserver((entries) => {
      entries.forEach((entry) => {
        if (!entry.isIntersecting) return;
        if (entry.intersectionRatio < 0.5 && entry.intersectionRect.height < 120) return;
        this.observer.unobserve(entry.target);
        this.seenQueue.add(entry.target);
      });
      this.scheduleSeen();
    }, { threshold: [0, 0.1, 0.25, 0.5] });
    $all('.comment.unread').forEach((node) => { if (!node.classList.contains('seen')) this.observer.observe(node); });
    document.addEventListener('visibilitychange', () => this.scheduleSeen());
  }

  scheduleSeen() {
    if (this.seenTimer || !this.seenQueue.size) return;
    this.seenTimer = setTimeout(() => { this.seenTimer = null; this.flushSeen(); }, SEEN_FLUSH_MS);
  }

  flushSeen() {
    if (document.visibilityState !== 'visible' || this.seenBusy || !this.seenQueue.size) return;
    const nodes = Array.from(this.seenQueue).filter((node) => node.isConnected);
    this.seenQueue.clear();
    if (!nodes.length) return;
    this.seenBusy = true;
    const body = new URLSearchParams();
    nodes.forEach((node) => body.append('comment_id', node.getAttribute('data-comment-id')));
    fetch(this.page.comments_seen_url, {
      method: 'POST', body: body, credentials: 'same-origin', headers: { Accept: 'application/json', 'X-CSRFToken': csrfToken() }
    })
      .then((response) => (response.ok ? response.json() : Promise.reject(new Error(String(response.status)))))
      .then((answer) => {
        const notice = $('#comment-notice');
        nodes.forEach((node) => {
          node.classList.add('seen');
          refreshRunMarker(node.closest('li.turn'));
          if (notice && notice.getAttribute('data-comment') === node.id) notice.hidden = true; // scrolled to it
        });
        showUnreadCount($('#session-list a[aria-current="page"] .unread-count'), answer.unread);
      })
      .catch(() => { nodes.forEach((node) => this.observer.observe(node)); }) // tried again while on screen
      .then(() => { this.seenBusy = false; this.scheduleSeen(); });
  }

  /* One comment.* frame. */
  apply(frame) {
    const turnEl = document.getElementById('run-' + frame.execution_id);
    if (!turnEl) return;
    let list = $('ul.comments', turnEl);
    if (!list) {
      list = el('ul', 'comments');
      list.setAttribute('aria-label', 'Comments on this run');
      turnEl.appendChild(list);
    }
    const existing = document.getElementById('comment-' + frame.comment_id);
    if (existing && parseInt(existing.getAttribute('data-version'), 10) >= frame.version) return;
    if (frame.type === 'comment.deleted') {
      if (existing) existing.remove();
      refreshRunMarker(turnEl);
      return;
    }
    const item = this.build(frame);
    const owner = this.page.access === 'owner';
    if (owner && frame.unread) markUnread(item);
    else if (existing && existing.classList.contains('unread')) { markUnread(item); item.classList.add('seen'); }
    if (existing) existing.replaceWith(item);
    else list.appendChild(item);
    if (owner && frame.unread && this.observer) this.observer.observe(item);
    if (!existing && frame.type === 'comment.added' && owner) {
      this.announce(turnEl, item);
      if (frame.unread) bumpCurrentUnread();
    }
    refreshRunMarker(turnEl);
  }

  /* The student opens a session with comments not seen yet: when the first is out of view, the
     notice names its run (its Show button jumps there). */
  announceUnread() {
    if (this.page.access !== 'owner') return;
    const first = $all('.comment.unread').find((node) => !node.classList.contains('seen'));
    const turnEl = first && first.closest('li.turn');
    if (turnEl) this.announce(turnEl, first);
  }

  /* A comment that arrived while the student watches: marked "new"; when its run is out of view
     (above the fold, say), a notice names the run and its button jumps there. */
  announce(turnEl, item) {
    markUnread(item);
    const conversation = $('#conversation');
    if (inView(item, conversation)) return;
    let notice = $('#comment-notice');
    if (!notice) {
      notice = el('div', 'comment-notice');
      notice.id = 'comment-notice';
      notice.setAttribute('role', 'status');
      notice.appendChild(el('span', 'comment-notice-text'));
      const show = el('button', 'btn small primary', 'Show');
      show.type = 'button';
      show.addEventListener('click', () => {
        const target = document.getElementById(notice.getAttribute('data-comment'));
        notice.hidden = true;
        if (target) { target.scrollIntoView({ block: 'center' }); target.setAttribute('tabindex', '-1'); target.focus({ preventScroll: true }); }
      });
      notice.appendChild(show);
      const close = el('button', 'btn ghost small', 'Dismiss');
      close.type = 'button';
      close.addEventListener('click', () => { notice.hidden = true; });
      notice.appendChild(close);
      (conversation || document.body).before(notice);
    }
    const seq = $('.seq', turnEl);
    const number = seq ? (seq.getAttribute('data-seq') || seq.textContent.replace(/[\[\]*]/g, '')) : '';
    $('.comment-notice-text', notice).textContent = 'New comment on run [' + number + '] ↑';
    notice.setAttribute('data-comment', item.id);
    notice.hidden = false;
  }

  build(frame) {
    const li = el('li', 'comment');
    li.id = 'comment-' + frame.comment_id;
    li.setAttribute('data-comment-id', frame.comment_id);
    li.setAttribute('data-version', frame.version);
    const head = el('div', 'comment-head');
    head.appendChild(el('span', 'comment-author', frame.author));
    head.appendChild(document.createTextNode(' · '));
    const time = el('time', null, formatWhen(frame.created_at));
    time.setAttribute('datetime', frame.created_at);
    head.appendChild(time);
    if (frame.edited_at) head.appendChild(el('span', 'muted comment-edited', '(edited)'));
    li.appendChild(head);
    const body = el('div', 'comment-body rich');
    body.innerHTML = frame.html; // rendered and sanitised by the server (nh3), like rich results
    li.appendChild(body);
    if (frame.can_edit && this.page.comment_edit_url) this.addAuthorControls(li, head, frame);
    return li;
  }

  addAuthorControls(li, head, frame) {
    const del = el('form', 'inline-form comment-delete');
    del.method = 'post';
    del.action = this.page.comment_delete_url.replace('{id}', frame.comment_id);
    const delButton = el('button', 'btn ghost small', 'Delete');
    delButton.type = 'submit';
    delButton.setAttribute('aria-label', 'Delete comment');
    del.appendChild(delButton);
    head.appendChild(del);
    const details = el('details', 'comment-edit');
    details.appendChild(el('summary', 'btn ghost small', 'Edit'));
    const form = el('form');
    form.method = 'post';
    form.action = this.page.comment_edit_url.replace('{id}', frame.comment_id);
    const label = el('label', 'visually-hidden', 'Edit comment');
    label.htmlFor = 'comment-edit-' + frame.comment_id;
    const area = el('textarea');
    area.id = label.htmlFor;
    area.name = 'body';
    area.rows = 3;
    area.required = true;
    area.value = frame.body;
    const save = el('button', 'btn small primary', 'Save');
    save.type = 'submit';
    form.append(label, area, save);
    details.appendChild(form);
    li.appendChild(details);
  }

  /* Edit and delete forms under comments go by fetch; the socket's frame then updates the page. */
  submitted(e) {
    const form = e.target;
    if (!form.closest || !form.closest('.comment')) return;
    e.preventDefault();
    const fields = {};
    $all('textarea, input[type="hidden"]', form).forEach((f) => { if (f.name && f.name !== 'csrfmiddlewaretoken') fields[f.name] = f.value; });
    postForm(form.action, fields).catch((err) => showMessage(err.message, 'comment'));
  }

  /* A run's Comment button: the box targets that run, and the cursor goes to the comment. */
  commentOn(executionId) {
    if (!this.target || !this.bodyInput) return;
    this.target.value = String(executionId);
    this.bodyInput.focus();
  }

  /* The page lost access (the student left the class): the box can't post any more. */
  disable() {
    if (!this.box) return;
    $all('textarea, select, button', this.box).forEach((field) => { field.disabled = true; });
    $all('.comment-edit, .comment-delete', document).forEach((node) => node.remove());
  }

  /* A run's status changed: its entry in "Comment on" says so (`text` as the status line shows it). */
  runStatus(executionId, text) {
    if (!this.target) return;
    const option = $('option[value="' + executionId + '"]', this.target);
    if (!option) return;
    option.textContent = option.textContent.replace(/ · .*$/, '') + ' · ' + plainStatus(text);
  }

  /* /sessions/<id>/#run-8 (the class page's link to a run): the box targets run 8, not the newest. */
  followHash() {
    const match = /^#run-(\d+)$/.exec(window.location.hash);
    if (match && this.target && $('option[value="' + match[1] + '"]', this.target)) this.target.value = match[1];
  }

  wireBox() {
    this.target = $('#comment-execution');
    this.followHash();
    window.addEventListener('hashchange', () => this.followHash());
    this.bodyInput = $('#comment-body');
    const snippets = $('[data-role="snippets"]');
    if (snippets) {
      snippets.addEventListener('change', () => {
        if (!snippets.value) return;
        this.bodyInput.value = snippets.value;
        snippets.value = '';
        this.bodyInput.focus();
      });
    }
    this.box.addEventListener('submit', (e) => {
      e.preventDefault();
      this.post();
    });
    this.bodyInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); this.post(); }
    });
  }

  post() {
    const body = this.bodyInput.value;
    if (!body.trim() || !this.target.value) { this.bodyInput.focus(); return; }
    const button = $('#comment-submit');
    button.disabled = true;
    postForm(this.page.comment_url, { execution_id: this.target.value, body: body })
      .then(() => { this.bodyInput.value = ''; })
      .catch((err) => showMessage(err.message, 'comment'))
      .finally(() => { button.disabled = false; });
  }

  /* A new run in the watched session: it becomes the comment box's default target. */
  runAdded(frame) {
    if (!this.target || $('option[value="' + frame.execution_id + '"]', this.target)) return;
    const option = el('option', null, 'run [' + frame.seq + '] · queued');
    option.value = String(frame.execution_id);
    this.target.insertBefore(option, this.target.firstChild);
    this.target.value = option.value;
  }
}

function markUnread(item) {
  item.classList.add('unread');
  if ($('.new-badge', item)) return;
  const badge = el('span', 'badge new-badge', 'new');
  const head = $('.comment-head', item);
  if (head) head.prepend(badge);
}

/* The run's "N new comments" marker, from its comments not yet seen (none: no marker). */
function refreshRunMarker(turnEl) {
  if (!turnEl) return;
  const unread = $all('.comment.unread', turnEl).filter((node) => !node.classList.contains('seen')).length;
  let marker = $('.unread-marker', turnEl);
  if (!unread) { if (marker) marker.remove(); return; }
  if (!marker) {
    marker = el('span', 'badge unread-marker');
    const head = $('.bubble-head', turnEl);
    const time = head && $('time', head);
    if (time) time.after(marker);
    else if (head) head.appendChild(marker);
  }
  marker.textContent = unread + ' new comment' + (unread === 1 ? '' : 's');
}

/* A comment arrived on the session this page shows: its sidebar entry counts it until it is seen. */
function bumpCurrentUnread() {
  const badge = $('#session-list a[aria-current="page"] .unread-count');
  if (badge) showUnreadCount(badge, (parseInt(badge.getAttribute('data-unread'), 10) || 0) + 1);
}
