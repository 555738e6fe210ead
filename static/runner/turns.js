// The conversation's turns (one per execution): adopting server-rendered ones, building new ones, status lines.
import { $, $all, el } from './dom.js';
import { elapsedText, finishedStatus, isActiveStatus } from './format.js';
import { applyFolds, finishOutput, streamStates } from './output.js';

export function isActive(turn) { return isActiveStatus(turn.status); }

export function highlight(codeEl) {
  if (window.hljs && codeEl && !codeEl.dataset.highlighted) {
    const lang = codeEl.getAttribute('data-language');
    if (lang && window.hljs.getLanguage(lang)) {
      try { window.hljs.highlightElement(codeEl); } catch (e) { /* plain code is fine */ }
    }
  }
}

export class Turns {
  /* `list` is the <ol> of turns; `languageLabel(lang)` names a language for a new turn's badge;
     `canRerun`: whether new turns get "Edit & rerun" (not on a teacher's or admin's read-only page). */
  constructor(list, languageLabel, { canRerun = true, canComment = false } = {}) {
    this.list = list;
    this.languageLabel = languageLabel;
    this.canRerun = canRerun;
    this.canComment = canComment; // a teacher's page: each run has a Comment button
    this.byId = new Map(); // execution_id -> turn state
  }

  get(id) { return this.byId.get(id); }

  /* The turn an element sits in, or null. */
  around(node) {
    const li = node.closest('.turn');
    return li ? this.get(parseInt(li.getAttribute('data-execution-id'), 10)) : null;
  }

  /* Queued and running turns, oldest first. */
  active() {
    const list = [];
    this.byId.forEach((t) => { if (isActive(t)) list.push(t); });
    list.sort((a, b) => a.id - b.id);
    return list;
  }

  adoptAll() {
    if (this.list) $all(':scope > li.turn', this.list).forEach((li) => this.adopt(li));
  }

  adopt(li) {
    const id = parseInt(li.getAttribute('data-execution-id'), 10);
    const output = $('.output', li);
    const lastBlock = output.lastElementChild;
    const turn = {
      id: id,
      el: li,
      output: output,
      statusLine: $('.status-line', li),
      status: li.getAttribute('data-status'),
      lastIndex: parseInt(li.getAttribute('data-last-index'), 10),
      startedAt: li.getAttribute('data-started-at') ? Date.parse(li.getAttribute('data-started-at')) : null,
      streamPre: lastBlock && lastBlock.matches('pre.stream') ? lastBlock : null,
      states: streamStates(),
      ename: null,
      code: $('code', li).textContent,
      language: $('code', li).getAttribute('data-language'),
      pendingRich: 0
    };
    const tb = $('pre.traceback', li);
    if (tb) turn.ename = (tb.getAttribute('aria-label') || '').replace('Traceback: ', '') || null;
    if (turn.streamPre) turn.streamPre.dataset.chars = String(turn.streamPre.textContent.length);
    this.byId.set(id, turn);
    highlight($('code', li));
    if (!isActive(turn)) {
      const sr = $('.status-sr', li);
      if (sr) sr.textContent = '';
      applyFolds(turn.output);
    }
    return turn;
  }

  /* A new turn for an `execution.queued` frame, appended to the list. */
  add(frame) {
    const turn = this.adopt(this.list.appendChild(this.build(frame)));
    turn.status = 'queued';
    return turn;
  }

  build(frame) {
    const li = el('li', 'turn');
    li.id = 'run-' + frame.execution_id;
    li.setAttribute('data-execution-id', frame.execution_id);
    li.setAttribute('data-status', 'queued');
    li.setAttribute('data-last-index', '-1');
    const bubble = el('div', 'bubble code-bubble');
    const head = el('div', 'bubble-head');
    head.appendChild(el('span', 'badge lang-' + frame.language, this.languageLabel(frame.language)));
    const seq = el('span', 'seq', '[' + frame.seq + ']');
    seq.title = 'Run number';
    seq.setAttribute('data-seq', String(frame.seq));
    head.appendChild(seq);
    const now = new Date();
    const time = el('time', null, now.toTimeString().slice(0, 5));
    time.setAttribute('datetime', now.toISOString());
    head.appendChild(time);
    head.appendChild(el('span', 'spacer'));
    const copy = el('button', 'btn ghost small', 'Copy');
    copy.type = 'button';
    copy.setAttribute('data-action', 'copy');
    copy.setAttribute('aria-label', 'Copy code of run ' + frame.seq);
    const rerun = el('button', 'btn ghost small', 'Edit & rerun');
    rerun.type = 'button';
    rerun.setAttribute('data-action', 'rerun');
    rerun.setAttribute('aria-label', 'Edit and rerun run ' + frame.seq);
    head.appendChild(copy);
    if (this.canComment) {
      const comment = el('button', 'btn ghost small', 'Comment');
      comment.type = 'button';
      comment.setAttribute('data-action', 'comment-on');
      comment.setAttribute('aria-label', 'Comment on run ' + frame.seq);
      head.appendChild(comment);
    }
    if (this.canRerun) head.appendChild(rerun);
    bubble.appendChild(head);
    const pre = el('pre', 'code');
    const code = el('code', 'language-' + frame.language, frame.code);
    code.setAttribute('data-language', frame.language);
    pre.appendChild(code);
    bubble.appendChild(pre);
    li.appendChild(bubble);

    const reply = el('div', 'reply');
    const status = el('div', 'status-line queued');
    status.setAttribute('aria-live', 'polite');
    const spinner = el('span', 'spinner');
    spinner.setAttribute('aria-hidden', 'true');
    status.appendChild(spinner);
    status.appendChild(el('span', 'status-text', 'queued'));
    status.appendChild(el('span', 'visually-hidden status-sr', ''));
    reply.appendChild(status);
    reply.appendChild(el('div', 'output'));
    li.appendChild(reply);
    const comments = el('ul', 'comments');
    comments.setAttribute('aria-label', 'Comments on run ' + frame.seq);
    li.appendChild(comments);
    return li;
  }

  /* An `execution.starting` frame: "Starting your sandbox (3 ahead of you) · 4 s", ticking, until it runs. */
  markStarting(turn, frame) {
    turn.startingSince = Date.now() - Math.max(0, frame.waited_ms || 0);
    turn.ahead = Math.max(0, frame.ahead || 0);
    turn.el.setAttribute('data-starting', String(turn.ahead));
    setStatus(turn, startingText(turn), 'starting', turn.ahead ? 'Starting your sandbox, ' + turn.ahead + ' ahead of you' : 'Starting your sandbox');
  }

  markRunning(turn, notice) {
    endStarting(turn);
    turn.status = 'running';
    turn.el.setAttribute('data-status', 'running');
    if (!turn.startedAt) turn.startedAt = Date.now();
    setStatus(turn, 'running 0.0 s', 'running', 'Running');
    markSeq(turn, true);
    if (notice && !$('.notice', turn.el)) {
      const note = el('p', 'notice', notice);
      note.setAttribute('role', 'note');
      turn.statusLine.before(note);
    }
  }

  markFinished(turn, frame) {
    endStarting(turn);
    turn.status = frame.status;
    turn.el.setAttribute('data-status', frame.status);
    turn.el.setAttribute('data-finished', '1');
    const s = finishedStatus(frame.status, frame.duration_ms, turn.ename);
    setStatus(turn, s[0], s[1], 'Run finished: ' + s[2]);
    markSeq(turn, false);
    finishOutput(turn, frame);
    return s[0];
  }

  /* Queued turns read "starting…" (the first, while nothing runs) or "queued"; returns how many wait. */
  labelQueued() {
    const active = this.active();
    const queued = active.filter((t) => t.status === 'queued').length;
    const running = active.some((t) => t.status === 'running');
    active.forEach((t, i) => {
      if (t.status !== 'queued' || t.startingSince) return;
      const text = i === 0 ? 'starting…' : 'queued';
      const node = $('.status-text', t.statusLine);
      if (node.textContent !== text) node.textContent = text;
    });
    return running ? queued : Math.max(0, queued - 1);
  }

  /* Tick the "running 1.2 s" clocks of running turns every 0.1 s. */
  startClocks() {
    setInterval(() => {
      this.byId.forEach((turn) => {
        if (turn.startingSince) {
          $('.status-text', turn.statusLine).textContent = startingText(turn);
        } else if (turn.status === 'running' && turn.startedAt) {
          $('.status-text', turn.statusLine).textContent = 'running ' + elapsedText(Math.max(0, Date.now() - turn.startedAt));
        }
      });
    }, 100);
  }
}

function startingText(turn) {
  const seconds = Math.floor(Math.max(0, Date.now() - turn.startingSince) / 1000);
  return 'Starting your sandbox' + (turn.ahead ? ' (' + turn.ahead + ' ahead of you)' : '') + ' · ' + seconds + ' s';
}

function endStarting(turn) {
  if (!turn.startingSince) return;
  turn.startingSince = null;
  turn.el.removeAttribute('data-starting');
}

/* A status text's leading symbol -> the page's SVG icon (sandpit.css .status-icon), as the server
   renders it (STATUS_ICONS in runner/selectors/sessions.py): the icon, not a font, draws the symbol. */
const STATUS_ICONS = { '✓': 'ok', '✗': 'err', '⏱': 'timeout', '■': 'stopped', '⚠': 'warn' };

function showStatusText(node, text) {
  const icon = STATUS_ICONS[text.charAt(0)];
  node.textContent = icon ? text.slice(1) : text;
  if (!icon) return;
  const mark = el('span', 'status-icon icon-' + icon, text.charAt(0));
  mark.setAttribute('aria-hidden', 'true');
  node.prepend(mark);
}

function setStatus(turn, text, cls, spoken) {
  const line = turn.statusLine;
  line.className = 'status-line ' + cls;
  showStatusText($('.status-text', line), text);
  const sr = $('.status-sr', line);
  if (spoken !== undefined && sr) {
    sr.textContent = spoken;
    // Screen readers hear the sentence ("Run finished: succeeded in 0.2 s"), not the symbols too.
    $('.status-text', line).setAttribute('aria-hidden', spoken ? 'true' : 'false');
  }
}

/* The run's number shows [*] while it runs; `data-seq` (rendered by the server and by build()) keeps
   the number, so a page opened mid-run, whose label already reads [*], still gets [8] back. */
function markSeq(turn, running) {
  const seq = $('.seq', turn.el);
  if (!seq) return;
  if (!seq.dataset.seq) seq.dataset.seq = seq.textContent.replace(/[\[\]*]/g, '');
  seq.textContent = running ? '[*]' : '[' + seq.dataset.seq + ']';
}
