// A run's output blocks: ANSI streams, MIME bundles (images, sanitised rich HTML), tracebacks, notes and folds.
// User output only ever enters the page as text nodes, <img> data URLs, or server-sanitised HTML
// (fetched from the run's output endpoint, which passes it through nh3).
import * as Ansi from './ansi.js';
import { $all, el, page } from './dom.js';
import { isActiveStatus, stoppedNote } from './format.js';
import { isAtBottom, scrollToBottom } from './scroll.js';

const FOLD_LINES = 40;
const FOLD_TRACEBACK_LINES = 20;
const TRACEBACK_HEAD_LINES = 4; // a folded traceback keeps its head and its last lines (the error itself)
const TRACEBACK_TAIL_LINES = 10;
const MAX_DOM_CHARS = 200000; // per stream block; older text is dropped from the DOM, "show all" refetches

export function streamStates() { return { stdout: Ansi.newState(), stderr: Ansi.newState() }; }

function ensureStreamPre(turn) {
  if (turn.streamPre && turn.streamPre === turn.output.lastElementChild) return turn.streamPre;
  const pre = el('pre', 'out stream');
  pre.dataset.chars = '0';
  pre.dataset.lines = '1';
  turn.output.appendChild(pre);
  turn.streamPre = pre;
  turn.states = streamStates();
  return pre;
}

export function appendStream(turn, kind, text) {
  if (!text) return;
  const pre = ensureStreamPre(turn);
  Ansi.append(pre, text, turn.states[kind], kind);
  pre.dataset.chars = String(parseInt(pre.dataset.chars || '0', 10) + text.length);
  pre.dataset.lines = String(parseInt(pre.dataset.lines || '1', 10) + (text.match(/\n/g) || []).length);
  if (parseInt(pre.dataset.chars, 10) > MAX_DOM_CHARS) trimHead(turn, pre);
}

/* Keep a bounded tail of a huge stream in the DOM: drop the oldest nodes, say so, offer "show all". */
function trimHead(turn, pre) {
  let chars = parseInt(pre.dataset.chars, 10);
  let excess = chars - MAX_DOM_CHARS * 0.75;
  // Cut from the oldest text nodes (one span can hold one long text node), ending on a line break.
  const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
  let node = walker.nextNode();
  while (node && excess > 0) {
    const next = walker.nextNode();
    const len = node.data.length;
    if (len <= excess) {
      excess -= len;
      chars -= len;
      node.data = '';
    } else {
      const nl = node.data.indexOf('\n', excess);
      const cut = nl === -1 || nl - excess > 4096 ? excess : nl + 1;
      node.deleteData(0, cut);
      chars -= cut;
      excess = 0;
    }
    node = next;
  }
  $all('span', pre).forEach((span) => { if (!span.textContent) span.remove(); });
  pre.dataset.chars = String(chars);
  pre.dataset.clipped = '1';
  if (!pre.previousElementSibling || !pre.previousElementSibling.classList.contains('hidden-head')) {
    const bar = el('p', 'hidden-head');
    bar.appendChild(el('span', null, 'Earlier output is hidden to keep the page responsive.'));
    const btn = el('button', 'btn ghost small', 'Show all output');
    btn.type = 'button';
    btn.setAttribute('data-action', 'load-all');
    btn.disabled = isActiveStatus(turn.status);
    btn.title = btn.disabled ? 'Available when the run ends' : '';
    bar.appendChild(btn);
    turn.output.insertBefore(bar, pre);
  }
}

function imageSource(bundle) {
  const mimes = ['image/png', 'image/jpeg', 'image/svg+xml', 'image/gif'];
  for (const mime of mimes) {
    let payload = bundle[mime];
    if (typeof payload !== 'string') continue;
    if (mime === 'image/svg+xml') {
      // SVG only ever as an <img> (scripts in it never run there), never inlined.
      const bytes = new TextEncoder().encode(payload);
      let bin = '';
      for (let j = 0; j < bytes.length; j++) bin += String.fromCharCode(bytes[j]);
      payload = btoa(bin);
    }
    return { mime: mime, src: 'data:' + mime + ';base64,' + payload.trim() };
  }
  return null;
}

export function appendResult(turn, frame) {
  const bundle = frame.data || {};
  const image = imageSource(bundle);
  if (image) {
    const fig = el('figure', 'out out-image');
    const zoom = el('button', 'img-zoom');
    zoom.type = 'button';
    zoom.setAttribute('data-action', 'zoom');
    zoom.setAttribute('aria-pressed', 'false');
    zoom.setAttribute('aria-label', 'Image output ' + frame.index + ': show full size');
    const img = el('img');
    img.src = image.src;
    img.alt = 'Image output ' + frame.index + ' (' + image.mime + ')';
    zoom.appendChild(img);
    fig.appendChild(zoom);
    turn.output.appendChild(fig);
    return;
  }
  if (typeof bundle['text/html'] === 'string' || typeof bundle['text/markdown'] === 'string') {
    // Rich markup goes through the server's sanitiser: show the plain text until it arrives.
    const holder = el('div', 'out rich');
    holder.setAttribute('data-first-index', frame.index);
    holder.textContent = typeof bundle['text/plain'] === 'string' ? bundle['text/plain'] : '…';
    turn.output.appendChild(holder);
    loadSanitised(turn, frame.index, holder);
    return;
  }
  const text = typeof bundle['text/plain'] === 'string' ? bundle['text/plain'] : (frame.text || '');
  const pre = el('pre', 'out result');
  Ansi.append(pre, text, Ansi.newState());
  pre.dataset.lines = String((text.match(/\n/g) || []).length + 1);
  turn.output.appendChild(pre);
}

function outputUrl(executionId) { return page.output_url.replace('{id}', String(executionId)); }

function fetchFragment(url) {
  return fetch(url, { credentials: 'same-origin', headers: { Accept: 'text/html' } }).then((r) => {
    if (!r.ok) throw new Error('HTTP ' + r.status);
    return r.text();
  }).then((html) => {
    // The endpoint's markup is server-rendered: escaped text and nh3-sanitised HTML only.
    const tpl = document.createElement('template');
    tpl.innerHTML = html;
    return tpl.content;
  });
}

function loadSanitised(turn, index, holder) {
  turn.pendingRich += 1;
  fetchFragment(outputUrl(turn.id) + '?index=' + index).then((fragment) => {
    const block = fragment.firstElementChild;
    if (block) holder.replaceWith(block);
  }).catch(() => { /* the plain-text fallback stays */ }).then(() => {
    turn.pendingRich -= 1;
    if (isAtBottom()) scrollToBottom();
  });
}

/* Replace the turn's (trimmed) output with all of it from the server; rejects if the fetch fails. */
export function loadAllOutput(turn) {
  return fetchFragment(outputUrl(turn.id)).then((fragment) => {
    turn.output.replaceChildren(fragment);
    const last = turn.output.lastElementChild;
    turn.streamPre = last && last.matches('pre.stream') ? last : null;
    applyFolds(turn.output);
  });
}

/* The server's own words in the output (truncation, a failure note): shown as a note, not as program output. */
export function appendNote(turn, marker, text) {
  const cls = marker === 'truncated' ? 'trunc' : marker === 'held' ? 'held' : 'server-note';
  const p = el('p', 'out-note ' + cls, text.trim());
  p.setAttribute('role', 'note');
  turn.output.appendChild(p);
}

export function appendError(turn, frame) {
  const d = frame.data || {};
  turn.ename = d.ename || turn.ename;
  const lines = Array.isArray(d.traceback) && d.traceback.length ? d.traceback.join('\n') : (frame.text || ((d.ename || 'Error') + ': ' + (d.evalue || '')));
  const pre = el('pre', 'out traceback');
  pre.setAttribute('aria-label', 'Traceback: ' + (d.ename || 'error'));
  if (lines.indexOf('\x1b[') !== -1) {
    Ansi.append(pre, lines, Ansi.newState());
  } else {
    // A kernel without colours: still set the "ZeroDivisionError: ..." line apart, as Jupyter does.
    const trimmed = lines.replace(/\n+$/, '');
    const cut = trimmed.lastIndexOf('\n');
    if (cut !== -1) pre.appendChild(document.createTextNode(trimmed.slice(0, cut + 1)));
    pre.appendChild(el('span', 'ansi-fg-1 ansi-bold', trimmed.slice(cut + 1)));
  }
  pre.dataset.lines = String((lines.match(/\n/g) || []).length + 1);
  turn.output.appendChild(pre);
  foldBlock(pre);
}

/* The notes a finished run gets: "stopped" after a Stop, the output cap, and "show all" becomes available. */
export function finishOutput(turn, frame) {
  // A stream block holding only blank lines (bash echoes one on Stop) is an empty box: drop it.
  $all('pre.out.stream', turn.output).forEach((pre) => { if (!pre.textContent.trim()) pre.remove(); });
  if (turn.streamPre && !turn.streamPre.isConnected) turn.streamPre = null;
  const python = turn.language === 'python';
  if (frame.status === 'cancelled' && !(python && turn.output.textContent.indexOf('KeyboardInterrupt') !== -1)) {
    const [ename, text] = stoppedNote(turn.language);
    const note = el('p', 'stopped-note');
    note.setAttribute('role', 'note');
    if (ename) note.appendChild(el('span', 'ename', ename));
    note.appendChild(document.createTextNode(text));
    turn.output.appendChild(note);
  }
  if (frame.truncated && !turn.output.querySelector('.trunc')) {
    const p = el('p', 'trunc', page.truncation_notice || 'Output stopped at 2 MiB; the run went on.');
    p.setAttribute('role', 'note');
    turn.output.appendChild(p);
  }
  $all('[data-action="load-all"]', turn.output).forEach((b) => { b.disabled = false; b.title = ''; });
  applyFolds(turn.output);
}

function foldBlock(pre) {
  if (pre.dataset.folded) return;
  if (pre.dataset.clipped) {
    // Only the tail is in the DOM: show its end in a scrolling box, not its first lines.
    pre.classList.add('tail');
    pre.scrollTop = pre.scrollHeight;
    return;
  }
  const text = pre.textContent;
  const lines = text ? text.split('\n').length - (text.endsWith('\n') ? 1 : 0) : 0;
  pre.dataset.lines = String(lines);
  const isTraceback = pre.classList.contains('traceback');
  const limit = isTraceback ? FOLD_TRACEBACK_LINES : FOLD_LINES;
  if (lines <= limit) return;
  if (isTraceback && !foldMiddle(pre, lines)) return;
  pre.dataset.folded = '1';
  pre.classList.add('folded');
  const btn = el('button', 'btn ghost small fold-toggle', isTraceback ? 'Show full traceback' : 'Show all ' + lines + ' lines');
  btn.type = 'button';
  btn.setAttribute('data-action', 'unfold');
  btn.setAttribute('aria-expanded', 'false');
  pre.after(btn);
}

/* The DOM position just after the n-th newline (n >= 1) of `pre`'s text, or null. */
function positionAfterLine(pre, n) {
  const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
  let seen = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = node.data.indexOf('\n'); i !== -1; i = node.data.indexOf('\n', i + 1)) {
      seen += 1;
      if (seen === n) return { node: node, offset: i + 1 };
    }
  }
  return null;
}

/* Wrap a traceback's middle lines in .fold-middle (hidden while folded) behind a "⋯ N more lines" gap. */
function foldMiddle(pre, lines) {
  const start = positionAfterLine(pre, TRACEBACK_HEAD_LINES);
  const end = positionAfterLine(pre, lines - TRACEBACK_TAIL_LINES);
  if (!start || !end) return false;
  const range = document.createRange();
  range.setStart(start.node, start.offset);
  range.setEnd(end.node, end.offset);
  const middle = el('span', 'fold-middle');
  middle.appendChild(range.extractContents()); // splits ANSI spans, keeping their colours on both sides
  range.insertNode(middle);
  range.insertNode(el('span', 'fold-gap', '⋯ ' + (lines - TRACEBACK_HEAD_LINES - TRACEBACK_TAIL_LINES) + ' more lines\n'));
  return true;
}

export function applyFolds(output) {
  $all('pre.stream, pre.result, pre.traceback', output).forEach((pre) => {
    if (!pre.dataset.lines) pre.dataset.lines = String((pre.textContent.match(/\n/g) || []).length + 1);
    foldBlock(pre);
  });
}

/* Clicks on an output block's own controls: image zoom and fold toggles. Returns true if handled. */
export function handleOutputClick(target, action) {
  if (action === 'zoom') {
    const zoomed = target.closest('.out-image').classList.toggle('zoomed');
    target.setAttribute('aria-pressed', String(zoomed));
    target.setAttribute('aria-label', target.getAttribute('aria-label').replace(/: .*$/, zoomed ? ': fit to width' : ': show full size'));
    return true;
  }
  if (action === 'unfold') {
    const pre = target.previousElementSibling;
    const folded = pre.classList.toggle('folded');
    target.setAttribute('aria-expanded', String(!folded));
    const lines = pre.dataset.lines;
    target.textContent = folded ? (pre.classList.contains('traceback') ? 'Show full traceback' : 'Show all ' + lines + ' lines') : 'Show less';
    return true;
  }
  return false;
}
