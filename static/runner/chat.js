/* Sandpit's chat page: the websocket protocol of docs/ARCHITECTURE.md, the composer, and live output.

   - Frames are applied in arrival order, batched once per animation frame.
   - Output chunks are de-duplicated by (execution_id, index); a reconnect resumes with
     ?after_execution=&after_index= from the last contiguous chunk, so nothing is lost or doubled.
   - User output is only ever inserted as text nodes, <img> data URLs, or server-sanitised HTML
     (fetched from the run's output endpoint, which passes it through nh3). */
(function () {
  'use strict';

  document.documentElement.classList.add('js');
  var dataEl = document.getElementById('page-data');
  var page = dataEl ? JSON.parse(dataEl.textContent) : {};
  var Ansi = window.SandpitAnsi;

  var FOLD_LINES = 40;
  var FOLD_TRACEBACK_LINES = 20;
  var MAX_DOM_CHARS = 200000; // per stream block; older text is dropped from the DOM, "show all" refetches
  var PING_MS = 25000;
  var NOTICE_MARKER = 'sandpit/notice'; // runner/services/output.py: a chunk the server wrote, not the code

  var EXAMPLES = {
    hello: { language: 'python', code: 'print("Hello, world!")' },
    sine: {
      language: 'python',
      code: 'import numpy as np\nimport matplotlib.pyplot as plt\n\nx = np.linspace(0, 2 * np.pi, 200)\nplt.plot(x, np.sin(x))\nplt.title("A sine wave")\nplt.show()'
    },
    pandas: {
      language: 'python',
      code: 'import pandas as pd\n\ndf = pd.DataFrame({\n    "city": ["Lisbon", "Oslo", "Lima", "Osaka"],\n    "temp_c": [18.5, 4.0, 22.1, 16.3],\n    "rain_mm": [2.1, 0.0, 0.4, 5.8],\n})\ndf'
    }
  };

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // ---------------------------------------------------------------------------------------------
  // Formatting (mirrors runner/selectors/sessions.py)
  // ---------------------------------------------------------------------------------------------
  function durationText(ms) {
    if (ms === null || ms === undefined) return '';
    var s = ms / 1000;
    if (s < 10) return s.toFixed(2) + ' s';
    if (s < 60) return s.toFixed(1) + ' s';
    return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
  }
  function elapsedText(ms) {
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + ' s';
    return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
  }
  function relativeText(date) {
    var s = Math.max(0, (Date.now() - date.getTime()) / 1000);
    if (s < 45) return 'just now';
    if (s < 3600) return Math.max(1, Math.round(s / 60)) + ' min ago';
    if (s < 86400) return Math.round(s / 3600) + ' h ago';
    if (s < 86400 * 7) return Math.round(s / 86400) + ' d ago';
    return date.toLocaleDateString(undefined, { day: '2-digit', month: 'short', year: 'numeric' });
  }
  /* [visible text, css class, spoken summary] for a finished run. */
  function finishedStatus(status, durationMs, ename) {
    switch (status) {
      case 'succeeded': return ['✓ ' + durationText(durationMs), 'ok', 'succeeded in ' + durationText(durationMs)];
      case 'failed': return ['✗ ' + (ename || 'error'), 'err', 'failed with ' + (ename || 'an error')];
      case 'timed_out': {
        var secs = Math.round((durationMs || 60000) / 1000);
        return ['⏱ timed out after ' + secs + ' s', 'warn', 'timed out after ' + secs + ' seconds'];
      }
      case 'cancelled': return ['■ stopped', 'muted', 'stopped'];
      case 'interrupted': return ['⚠ interrupted (server restarted)', 'warn', 'interrupted because the server restarted'];
      case 'rejected': return ['✗ not run', 'err', 'not run'];
      default: return [status, 'muted', status];
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Elements
  // ---------------------------------------------------------------------------------------------
  var conversation = $('#conversation');
  var turnsEl = $('#turns');
  var emptyEl = $('#empty-session');
  var composer = $('#composer');
  var codeInput = $('#composer-code');
  var languageSelect = $('#composer-language');
  var runButton = $('#run-button');
  var stopButton = $('#stop-button');
  var queuedChip = $('#queued-chip');
  var hintEl = $('#composer-hint');
  var messagesEl = $('#composer-messages');
  var toast = $('#toast');
  var sandboxState = $('#sandbox-state');
  var shortcuts = $('#shortcuts');

  // ---------------------------------------------------------------------------------------------
  // Turns: one per execution
  // ---------------------------------------------------------------------------------------------
  var turns = new Map(); // execution_id -> turn state
  var canRun = !!page.can_run;
  var unavailable = false; // an `unavailable` error frame: the sandbox went away after the page loaded
  var connected = false;

  function highlight(codeEl) {
    if (window.hljs && codeEl && !codeEl.dataset.highlighted) {
      var lang = codeEl.getAttribute('data-language');
      if (lang && window.hljs.getLanguage(lang)) {
        try { window.hljs.highlightElement(codeEl); } catch (e) { /* plain code is fine */ }
      }
    }
  }

  function streamStates() { return { stdout: Ansi.newState(), stderr: Ansi.newState() }; }

  function adoptTurn(li) {
    var id = parseInt(li.getAttribute('data-execution-id'), 10);
    var output = $('.output', li);
    var lastBlock = output.lastElementChild;
    var turn = {
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
    var tb = $('pre.traceback', li);
    if (tb) turn.ename = (tb.getAttribute('aria-label') || '').replace('Traceback: ', '') || null;
    if (turn.streamPre) turn.streamPre.dataset.chars = String(turn.streamPre.textContent.length);
    turns.set(id, turn);
    highlight($('code', li));
    if (!isActive(turn)) {
      var sr = $('.status-sr', li);
      if (sr) sr.textContent = '';
      applyFolds(turn.output);
    }
    return turn;
  }

  function isActive(turn) { return turn.status === 'queued' || turn.status === 'running'; }

  function buildTurn(frame) {
    var li = el('li', 'turn');
    li.id = 'run-' + frame.execution_id;
    li.setAttribute('data-execution-id', frame.execution_id);
    li.setAttribute('data-status', 'queued');
    li.setAttribute('data-last-index', '-1');
    var bubble = el('div', 'bubble code-bubble');
    var head = el('div', 'bubble-head');
    var langLabel = (languageSelect && $('option[value="' + frame.language + '"]', languageSelect)) ? $('option[value="' + frame.language + '"]', languageSelect).textContent : frame.language;
    head.appendChild(el('span', 'badge lang-' + frame.language, langLabel));
    var seq = el('span', 'seq', '[' + frame.seq + ']');
    seq.title = 'Run number';
    head.appendChild(seq);
    var now = new Date();
    var time = el('time', null, now.toTimeString().slice(0, 5));
    time.setAttribute('datetime', now.toISOString());
    head.appendChild(time);
    head.appendChild(el('span', 'spacer'));
    var copy = el('button', 'btn ghost small', 'Copy');
    copy.type = 'button';
    copy.setAttribute('data-action', 'copy');
    copy.setAttribute('aria-label', 'Copy code of run ' + frame.seq);
    var rerun = el('button', 'btn ghost small', 'Edit & rerun');
    rerun.type = 'button';
    rerun.setAttribute('data-action', 'rerun');
    rerun.setAttribute('aria-label', 'Edit and rerun run ' + frame.seq);
    head.appendChild(copy);
    head.appendChild(rerun);
    bubble.appendChild(head);
    var pre = el('pre', 'code');
    var code = el('code', 'language-' + frame.language, frame.code);
    code.setAttribute('data-language', frame.language);
    pre.appendChild(code);
    bubble.appendChild(pre);
    li.appendChild(bubble);

    var reply = el('div', 'reply');
    var status = el('div', 'status-line queued');
    status.setAttribute('aria-live', 'polite');
    var spinner = el('span', 'spinner');
    spinner.setAttribute('aria-hidden', 'true');
    status.appendChild(spinner);
    status.appendChild(el('span', 'status-text', 'queued'));
    status.appendChild(el('span', 'visually-hidden status-sr', ''));
    reply.appendChild(status);
    reply.appendChild(el('div', 'output'));
    li.appendChild(reply);
    return li;
  }

  function setStatus(turn, text, cls, spoken) {
    var line = turn.statusLine;
    line.className = 'status-line ' + cls;
    $('.status-text', line).textContent = text;
    var sr = $('.status-sr', line);
    if (spoken !== undefined && sr) {
      sr.textContent = spoken;
      // Screen readers hear the sentence ("Run finished: succeeded in 0.2 s"), not the symbols too.
      $('.status-text', line).setAttribute('aria-hidden', spoken ? 'true' : 'false');
    }
  }

  function markSeq(turn, running) {
    var seq = $('.seq', turn.el);
    if (!seq) return;
    if (!seq.dataset.seq) seq.dataset.seq = seq.textContent.replace(/[\[\]*]/g, '');
    seq.textContent = running ? '[*]' : '[' + seq.dataset.seq + ']';
  }

  // ---------------------------------------------------------------------------------------------
  // Output blocks
  // ---------------------------------------------------------------------------------------------
  function ensureStreamPre(turn) {
    if (turn.streamPre && turn.streamPre === turn.output.lastElementChild) return turn.streamPre;
    var pre = el('pre', 'out stream');
    pre.dataset.chars = '0';
    pre.dataset.lines = '1';
    turn.output.appendChild(pre);
    turn.streamPre = pre;
    turn.states = streamStates();
    return pre;
  }

  function appendStream(turn, kind, text) {
    var pre = ensureStreamPre(turn);
    Ansi.append(pre, text, turn.states[kind], kind);
    pre.dataset.chars = String(parseInt(pre.dataset.chars || '0', 10) + text.length);
    pre.dataset.lines = String(parseInt(pre.dataset.lines || '1', 10) + (text.match(/\n/g) || []).length);
    if (parseInt(pre.dataset.chars, 10) > MAX_DOM_CHARS) trimHead(turn, pre);
  }

  /* Keep a bounded tail of a huge stream in the DOM: drop the oldest nodes, say so, offer "show all". */
  function trimHead(turn, pre) {
    var chars = parseInt(pre.dataset.chars, 10);
    var excess = chars - MAX_DOM_CHARS * 0.75;
    // Cut from the oldest text nodes (one span can hold one long text node), ending on a line break.
    var walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
    var node = walker.nextNode();
    while (node && excess > 0) {
      var next = walker.nextNode();
      var len = node.data.length;
      if (len <= excess) {
        excess -= len;
        chars -= len;
        node.data = '';
      } else {
        var nl = node.data.indexOf('\n', excess);
        var cut = nl === -1 || nl - excess > 4096 ? excess : nl + 1;
        node.deleteData(0, cut);
        chars -= cut;
        excess = 0;
      }
      node = next;
    }
    $all('span', pre).forEach(function (span) { if (!span.textContent) span.remove(); });
    pre.dataset.chars = String(chars);
    pre.dataset.clipped = '1';
    if (!pre.previousElementSibling || !pre.previousElementSibling.classList.contains('hidden-head')) {
      var bar = el('p', 'hidden-head');
      bar.appendChild(el('span', null, 'Earlier output is hidden to keep the page responsive.'));
      var btn = el('button', 'btn ghost small', 'Show all output');
      btn.type = 'button';
      btn.setAttribute('data-action', 'load-all');
      btn.disabled = isActive(turn);
      btn.title = btn.disabled ? 'Available when the run ends' : '';
      bar.appendChild(btn);
      turn.output.insertBefore(bar, pre);
    }
  }

  function imageSource(bundle) {
    var mimes = ['image/png', 'image/jpeg', 'image/svg+xml', 'image/gif'];
    for (var i = 0; i < mimes.length; i++) {
      var payload = bundle[mimes[i]];
      if (typeof payload !== 'string') continue;
      if (mimes[i] === 'image/svg+xml') {
        // SVG only ever as an <img> (scripts in it never run there), never inlined.
        var bytes = new TextEncoder().encode(payload);
        var bin = '';
        for (var j = 0; j < bytes.length; j++) bin += String.fromCharCode(bytes[j]);
        payload = btoa(bin);
      }
      return { mime: mimes[i], src: 'data:' + mimes[i] + ';base64,' + payload.trim() };
    }
    return null;
  }

  function appendResult(turn, frame) {
    var bundle = frame.data || {};
    var image = imageSource(bundle);
    if (image) {
      var fig = el('figure', 'out out-image');
      var zoom = el('button', 'img-zoom');
      zoom.type = 'button';
      zoom.setAttribute('data-action', 'zoom');
      zoom.setAttribute('aria-pressed', 'false');
      zoom.setAttribute('aria-label', 'Image output ' + frame.index + ': show full size');
      var img = el('img');
      img.src = image.src;
      img.alt = 'Image output ' + frame.index + ' (' + image.mime + ')';
      zoom.appendChild(img);
      fig.appendChild(zoom);
      turn.output.appendChild(fig);
      return;
    }
    if (typeof bundle['text/html'] === 'string' || typeof bundle['text/markdown'] === 'string') {
      // Rich markup goes through the server's sanitiser: show the plain text until it arrives.
      var holder = el('div', 'out rich');
      holder.setAttribute('data-first-index', frame.index);
      holder.textContent = typeof bundle['text/plain'] === 'string' ? bundle['text/plain'] : '…';
      turn.output.appendChild(holder);
      loadSanitised(turn, frame.index, holder);
      return;
    }
    var text = typeof bundle['text/plain'] === 'string' ? bundle['text/plain'] : (frame.text || '');
    var pre = el('pre', 'out result');
    Ansi.append(pre, text, Ansi.newState());
    pre.dataset.lines = String((text.match(/\n/g) || []).length + 1);
    turn.output.appendChild(pre);
  }

  function outputUrl(executionId) { return page.output_url.replace('{id}', String(executionId)); }

  function fetchFragment(url) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'text/html' } }).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.text();
    }).then(function (html) {
      // The endpoint's markup is server-rendered: escaped text and nh3-sanitised HTML only.
      var tpl = document.createElement('template');
      tpl.innerHTML = html;
      return tpl.content;
    });
  }

  function loadSanitised(turn, index, holder) {
    turn.pendingRich += 1;
    fetchFragment(outputUrl(turn.id) + '?index=' + index).then(function (fragment) {
      var block = fragment.firstElementChild;
      if (block) holder.replaceWith(block);
    }).catch(function () { /* the plain-text fallback stays */ }).then(function () {
      turn.pendingRich -= 1;
      if (atBottom) scrollToBottom();
    });
  }

  /* The server's own words in the output (truncation, a failure note): shown as a note, not as program output. */
  function appendNote(turn, marker, text) {
    var p = el('p', 'out-note ' + (marker === 'truncated' ? 'trunc' : 'server-note'), text.trim());
    p.setAttribute('role', 'note');
    turn.output.appendChild(p);
  }

  function appendError(turn, frame) {
    var d = frame.data || {};
    turn.ename = d.ename || turn.ename;
    var lines = Array.isArray(d.traceback) && d.traceback.length ? d.traceback.join('\n') : (frame.text || ((d.ename || 'Error') + ': ' + (d.evalue || '')));
    var pre = el('pre', 'out traceback');
    pre.setAttribute('aria-label', 'Traceback: ' + (d.ename || 'error'));
    if (lines.indexOf('\x1b[') !== -1) {
      Ansi.append(pre, lines, Ansi.newState());
    } else {
      // A kernel without colours: still set the "ZeroDivisionError: ..." line apart, as Jupyter does.
      var trimmed = lines.replace(/\n+$/, '');
      var cut = trimmed.lastIndexOf('\n');
      if (cut !== -1) pre.appendChild(document.createTextNode(trimmed.slice(0, cut + 1)));
      pre.appendChild(el('span', 'ansi-fg-1 ansi-bold', trimmed.slice(cut + 1)));
    }
    pre.dataset.lines = String((lines.match(/\n/g) || []).length + 1);
    turn.output.appendChild(pre);
    foldBlock(pre);
  }

  function foldBlock(pre) {
    if (pre.dataset.folded) return;
    if (pre.dataset.clipped) {
      // Only the tail is in the DOM: show its end in a scrolling box, not its first lines.
      pre.classList.add('tail');
      pre.scrollTop = pre.scrollHeight;
      return;
    }
    var text = pre.textContent;
    var lines = text ? text.split('\n').length - (text.endsWith('\n') ? 1 : 0) : 0;
    pre.dataset.lines = String(lines);
    var isTraceback = pre.classList.contains('traceback');
    var limit = isTraceback ? FOLD_TRACEBACK_LINES : FOLD_LINES;
    if (lines <= limit) return;
    pre.dataset.folded = '1';
    pre.classList.add('folded');
    var btn = el('button', 'btn ghost small fold-toggle', isTraceback ? 'Show full traceback' : 'Show all ' + lines + ' lines');
    btn.type = 'button';
    btn.setAttribute('data-action', 'unfold');
    btn.setAttribute('aria-expanded', 'false');
    pre.after(btn);
  }

  function applyFolds(output) {
    $all('pre.stream, pre.result, pre.traceback', output).forEach(function (pre) {
      if (!pre.dataset.lines) pre.dataset.lines = String((pre.textContent.match(/\n/g) || []).length + 1);
      foldBlock(pre);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Frames, applied once per animation frame in arrival order
  // ---------------------------------------------------------------------------------------------
  var queue = [];
  var scheduled = false;
  var resume = page.last || null; // {execution_id, index}: the last contiguous output we hold
  var resyncing = false; // set on a gap until the socket reopens with the resume point

  function enqueue(frame) {
    queue.push(frame);
    if (scheduled) return;
    scheduled = true;
    if (document.hidden) setTimeout(flush, 50);
    else requestAnimationFrame(flush);
  }

  function flush() {
    scheduled = false;
    var wasAtBottom = atBottom;
    var frames = queue;
    queue = [];
    for (var i = 0; i < frames.length; i++) {
      try { applyFrame(frames[i]); } catch (err) { if (window.console) console.error('frame failed', frames[i], err); }
    }
    updateControls();
    if (wasAtBottom) scrollToBottom();
  }

  function applyFrame(frame) {
    switch (frame.type) {
      case 'hello': return onHello(frame);
      case 'execution.queued': return onQueued(frame);
      case 'execution.started': return onStarted(frame);
      case 'execution.output': return onOutput(frame);
      case 'execution.finished': return onFinished(frame);
      case 'error': return onError(frame);
      default: return undefined;
    }
  }

  function onHello(frame) {
    // The page knows whether the sandbox can run (health); hello knows whether this user may.
    if (!page.can_run) return;
    if (!frame.can_run) setCanRun(false, 'you can watch this session but not run code in it', true);
    else if (!canRun && !unavailable) setCanRun(true);
  }

  var pendingRun = null; // {client_id, code, language}: sent, not yet acknowledged by execution.queued

  function onQueued(frame) {
    var turn = turns.get(frame.execution_id);
    if (pendingRun && frame.client_id === pendingRun.client_id) pendingRun = null;
    if (turn) return;
    var li = buildTurn(frame);
    turnsEl.appendChild(li);
    turn = adoptTurn(li);
    turn.status = 'queued';
    if (emptyEl) emptyEl.hidden = true;
    pushHistory(frame.code);
    if (sandboxState && sandboxState.getAttribute('data-state') !== 'ready') setSandboxState('starting');
  }

  function onStarted(frame) {
    var turn = turns.get(frame.execution_id);
    if (!turn || !isActive(turn)) return;
    turn.status = 'running';
    turn.el.setAttribute('data-status', 'running');
    if (!turn.startedAt) turn.startedAt = Date.now();
    setStatus(turn, 'running 0.0 s', 'running', 'Running');
    markSeq(turn, true);
    if (frame.notice && !$('.notice', turn.el)) {
      var note = el('p', 'notice', frame.notice);
      note.setAttribute('role', 'note');
      turn.statusLine.before(note);
    }
    setSandboxState('ready');
  }

  function onOutput(frame) {
    var turn = turns.get(frame.execution_id);
    if (!turn) return;
    if (frame.index <= turn.lastIndex) return; // already shown (server render or an earlier replay)
    if (resyncing) return; // a replay from the resume point is on its way
    if (frame.index > turn.lastIndex + 1) {
      // A gap: some chunks never reached us. Resume from the last contiguous one; replay fills it.
      resume = { execution_id: turn.id, index: turn.lastIndex };
      resyncing = true;
      reconnectNow();
      return;
    }
    // Output means it runs, even if its `started` frame fell between the page render and the socket.
    if (turn.status === 'queued') onStarted({ execution_id: turn.id });
    turn.lastIndex = frame.index;
    turn.el.setAttribute('data-last-index', String(frame.index));
    if (!resume || frame.execution_id >= resume.execution_id) resume = { execution_id: frame.execution_id, index: frame.index };
    var marker = frame.data && frame.data[NOTICE_MARKER];
    if (marker && (frame.kind === 'stdout' || frame.kind === 'stderr')) appendNote(turn, marker, frame.text || '');
    else if (frame.kind === 'stdout' || frame.kind === 'stderr') appendStream(turn, frame.kind, frame.text || '');
    else if (frame.kind === 'error') appendError(turn, frame);
    else appendResult(turn, frame);
  }

  function onFinished(frame) {
    var turn = turns.get(frame.execution_id);
    if (!turn || !isActive(turn)) return;
    turn.status = frame.status;
    turn.el.setAttribute('data-status', frame.status);
    turn.el.setAttribute('data-finished', '1');
    var s = finishedStatus(frame.status, frame.duration_ms, turn.ename);
    setStatus(turn, s[0], s[1], 'Run finished: ' + s[2]);
    markSeq(turn, false);
    if (frame.status === 'cancelled' && turn.output.textContent.indexOf('KeyboardInterrupt') === -1) {
      var note = el('p', 'stopped-note');
      note.setAttribute('role', 'note');
      note.appendChild(el('span', 'ename', 'KeyboardInterrupt'));
      note.appendChild(document.createTextNode(": stopped; the session's variables are kept."));
      turn.output.appendChild(note);
    }
    if (frame.truncated && !$('.trunc', turn.output)) {
      var p = el('p', 'trunc', page.truncation_notice || 'Output stopped at 2 MiB; the run went on.');
      p.setAttribute('role', 'note');
      turn.output.appendChild(p);
    }
    $all('[data-action="load-all"]', turn.output).forEach(function (b) { b.disabled = false; b.title = ''; });
    applyFolds(turn.output);
    if (resume === null || turn.id > resume.execution_id) resume = { execution_id: turn.id, index: turn.lastIndex };
  }

  function onError(frame) {
    showMessage(frame.message || 'Something went wrong.', frame.code);
    if (pendingRun) {
      // The run was refused: give the code back rather than lose it.
      if (!codeInput.value.trim()) { codeInput.value = pendingRun.code; autosize(); }
      pendingRun = null;
    }
    if (frame.code === 'unavailable') { unavailable = true; setCanRun(false, frame.message); }
  }

  // ---------------------------------------------------------------------------------------------
  // Composer state: Run/Stop, queued chip, timers
  // ---------------------------------------------------------------------------------------------
  function activeTurns() {
    var list = [];
    turns.forEach(function (t) { if (isActive(t)) list.push(t); });
    list.sort(function (a, b) { return a.id - b.id; });
    return list;
  }

  function updateControls() {
    if (!composer) return;
    var active = activeTurns();
    var queued = active.filter(function (t) { return t.status === 'queued'; }).length;
    var running = active.some(function (t) { return t.status === 'running'; });
    stopButton.hidden = active.length === 0;
    runButton.hidden = active.length > 0 && !codeInput.value.trim();
    // A waiting run shows "N queued"; the first one only while nothing runs yet reads as "starting".
    var waiting = running ? queued : Math.max(0, queued - 1);
    active.forEach(function (t, i) {
      if (t.status !== 'queued') return;
      var text = i === 0 ? 'starting…' : 'queued';
      var node = $('.status-text', t.statusLine);
      if (node.textContent !== text) node.textContent = text;
    });
    queuedChip.hidden = waiting === 0;
    queuedChip.textContent = waiting + ' queued';
    runButton.disabled = !canRun;
    var dot = $('.running-dot[data-session-id="' + page.session_id + '"]');
    if (dot) dot.hidden = active.length === 0;
  }

  setInterval(function () {
    turns.forEach(function (turn) {
      if (turn.status === 'running' && turn.startedAt) {
        $('.status-text', turn.statusLine).textContent = 'running ' + elapsedText(Math.max(0, Date.now() - turn.startedAt));
      }
    });
  }, 100);

  function setSandboxState(state) {
    if (!sandboxState) return;
    sandboxState.setAttribute('data-state', state);
    sandboxState.textContent = state === 'ready' ? 'ready' : state === 'starting' ? 'starting…' : 'closed when idle · starts on your next run';
  }

  function setCanRun(ok, reason, readOnly) {
    canRun = ok;
    if (!composer) return;
    codeInput.disabled = !ok;
    languageSelect.disabled = !ok;
    runButton.disabled = !ok;
    $all('[data-example]').forEach(function (b) { b.disabled = !ok; });
    var banner = $('.banner-degraded');
    if (!ok && readOnly) {
      hintEl.textContent = 'Read-only: ' + reason;
      codeInput.placeholder = 'Read-only: ' + reason;
    } else if (!ok) {
      hintEl.textContent = 'Running is off: ' + reason;
      codeInput.placeholder = "Code can't run right now: " + reason;
      if (!banner) {
        banner = el('div', 'banner banner-degraded', "Code can't run right now: " + reason.replace(/[.\s]+$/, '') + '. Your history is still here.');
        banner.setAttribute('role', 'alert');
        document.body.insertBefore(banner, document.body.firstChild.nextSibling);
        document.body.classList.add('degraded');
      }
    } else {
      hintEl.textContent = 'Shift+Enter to run · ↑ for previous';
      codeInput.placeholder = 'Type code, then Shift+Enter to run';
      if (banner) { banner.remove(); document.body.classList.remove('degraded'); }
    }
    if (banner) document.documentElement.style.setProperty('--banner-h', banner.offsetHeight + 'px');
  }

  // ---------------------------------------------------------------------------------------------
  // Messages near the composer (error frames): inline, dismissible, never alert()
  // ---------------------------------------------------------------------------------------------
  function showMessage(text, code) {
    if (!messagesEl) return;
    var box = el('div', 'composer-message');
    box.setAttribute('role', 'alert');
    if (code) box.setAttribute('data-code', code);
    box.appendChild(el('p', null, text));
    var close = el('button', null, '✕');
    close.type = 'button';
    close.setAttribute('aria-label', 'Dismiss this message');
    close.addEventListener('click', function () { box.remove(); if (codeInput) codeInput.focus(); });
    box.appendChild(close);
    while (messagesEl.children.length >= 3) messagesEl.removeChild(messagesEl.firstChild);
    messagesEl.appendChild(box);
  }

  // ---------------------------------------------------------------------------------------------
  // Scrolling: follow new output only while the reader is at the bottom
  // ---------------------------------------------------------------------------------------------
  var atBottom = true;
  function computeAtBottom() {
    return conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 48;
  }
  function scrollToBottom() {
    conversation.scrollTop = conversation.scrollHeight;
    atBottom = true;
  }
  if (conversation) {
    conversation.addEventListener('scroll', function () { atBottom = computeAtBottom(); }, { passive: true });
    // Images (and sanitised HTML) grow the page after they load: stay pinned if the reader was.
    conversation.addEventListener('load', function (e) {
      if (e.target.tagName === 'IMG' && atBottom) scrollToBottom();
    }, true);
  }

  // ---------------------------------------------------------------------------------------------
  // The socket
  // ---------------------------------------------------------------------------------------------
  var ws = null;
  var closedForGood = false;

  function socketUrl() {
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    // Always resume from a point: with none yet, from the start (the replay is then the whole, small, session).
    var from = resume || { execution_id: 0, index: -1 };
    return scheme + location.host + page.ws_path +
      '?after_execution=' + encodeURIComponent(from.execution_id) + '&after_index=' + encodeURIComponent(from.index);
  }

  function showToast(show) { if (toast) toast.hidden = !show; }

  function connect() {
    if (!page.ws_path || !window.ReconnectingWebSocket) return;
    ws = new window.ReconnectingWebSocket(socketUrl, [], {
      // Exponential backoff with jitter: 0.5–1.5 s, ×1.6 per failure, at most 10 s.
      minReconnectionDelay: 500 + Math.random() * 1000,
      maxReconnectionDelay: 10000,
      reconnectionDelayGrowFactor: 1.6,
      connectionTimeout: 5000,
      maxEnqueuedMessages: 0 // never send a run late: the composer keeps the code instead
    });
    ws.addEventListener('open', function () {
      connected = true;
      resyncing = false;
      document.body.dataset.socket = 'open';
      showToast(false);
      updateControls();
    });
    ws.addEventListener('close', function (event) {
      connected = false;
      document.body.dataset.socket = 'closed';
      if (event.code === 4403 || event.code === 4404) {
        closedForGood = true;
        ws.close();
        showToast(false);
        showMessage(event.code === 4403 ? 'You may not run code in this session.' : 'This session no longer exists.', 'forbidden');
        setCanRun(false, event.code === 4403 ? 'this session is read-only for you' : 'the session is gone');
        return;
      }
      if (!closedForGood) showToast(true);
    });
    ws.addEventListener('message', function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame && typeof frame === 'object') enqueue(frame);
    });
  }

  function reconnectNow() {
    if (ws && !closedForGood) ws.reconnect();
  }

  window.addEventListener('offline', function () { if (ws && !closedForGood) { showToast(true); ws.reconnect(); } });
  window.addEventListener('online', reconnectNow);
  setInterval(function () { if (ws && connected) ws.send(JSON.stringify({ type: 'ping' })); }, PING_MS);

  function newClientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return 'c' + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function run() {
    if (!composer) return;
    var code = codeInput.value;
    if (!code.trim()) { codeInput.focus(); return; }
    if (!canRun) return;
    if (!ws || !connected) {
      showMessage('Not connected right now; your code is still here. Reconnecting…', 'offline');
      return;
    }
    var frame = { type: 'run', code: code, language: languageSelect.value, client_id: newClientId() };
    ws.send(JSON.stringify(frame));
    pendingRun = { client_id: frame.client_id, code: code };
    pushHistory(code);
    historyPos = -1;
    codeInput.value = '';
    autosize();
    $all('.composer-message', messagesEl).forEach(function (m) { m.remove(); });
    scrollToBottom();
    updateControls();
  }

  function stop() {
    var active = activeTurns();
    var target = active.filter(function (t) { return t.status === 'running'; })[0] || active[0];
    if (!target || !ws || !connected) return;
    ws.send(JSON.stringify({ type: 'stop', execution_id: target.id }));
  }

  // ---------------------------------------------------------------------------------------------
  // The editor: indentation, Shift+Enter, history
  // ---------------------------------------------------------------------------------------------
  var INDENT = '    ';
  var history = (page.history || []).slice();
  var historyPos = -1;
  var escapeArmed = false;

  function pushHistory(code) {
    if (!code || !code.trim()) return;
    if (history[history.length - 1] !== code) history.push(code);
  }

  function insertText(text) {
    codeInput.focus();
    // execCommand keeps the browser's undo stack; setRangeText is the fallback.
    if (!document.execCommand || !document.execCommand('insertText', false, text)) {
      codeInput.setRangeText(text, codeInput.selectionStart, codeInput.selectionEnd, 'end');
      codeInput.dispatchEvent(new Event('input'));
    }
  }

  function lineStart(value, pos) { return value.lastIndexOf('\n', pos - 1) + 1; }

  function reindent(dedent) {
    var value = codeInput.value;
    var start = codeInput.selectionStart;
    var end = codeInput.selectionEnd;
    var first = lineStart(value, start);
    var multi = value.slice(start, end).indexOf('\n') !== -1;
    if (!dedent && !multi) { insertText(INDENT.slice(0, INDENT.length - ((start - first) % INDENT.length))); return; }
    var blockEnd = end > start && value[end - 1] === '\n' ? end - 1 : end;
    var lines = value.slice(first, blockEnd).split('\n');
    var firstDelta = 0;
    var total = 0;
    var changed = lines.map(function (line, i) {
      if (dedent) {
        var m = line.match(/^( {1,4}|\t)/);
        var cut = m ? m[0].length : 0;
        if (i === 0) firstDelta = -Math.min(cut, start - first);
        total -= cut;
        return line.slice(cut);
      }
      if (i === 0) firstDelta = INDENT.length;
      total += INDENT.length;
      return INDENT + line;
    }).join('\n');
    codeInput.setSelectionRange(first, blockEnd);
    insertText(changed);
    codeInput.setSelectionRange(Math.max(first, start + firstDelta), end + total);
  }

  function newlineWithIndent() {
    var value = codeInput.value;
    var start = codeInput.selectionStart;
    var first = lineStart(value, start);
    var line = value.slice(first, start);
    var indent = (line.match(/^[ \t]*/) || [''])[0];
    if (/[:({\[]\s*$/.test(line)) indent += INDENT;
    insertText('\n' + indent);
  }

  function autosize() {
    if (!codeInput) return;
    codeInput.style.height = 'auto';
    codeInput.style.height = Math.min(codeInput.scrollHeight + 2, window.innerHeight * 0.4) + 'px';
    updateControls();
  }

  function recall(direction) {
    if (!history.length) return false;
    if (direction < 0) historyPos = historyPos === -1 ? history.length - 1 : Math.max(0, historyPos - 1);
    else {
      if (historyPos === -1) return false;
      historyPos += 1;
      if (historyPos >= history.length) { historyPos = -1; codeInput.value = ''; autosize(); return true; }
    }
    codeInput.value = history[historyPos];
    autosize();
    var caret = direction < 0 ? codeInput.value.indexOf('\n') : codeInput.value.length;
    codeInput.setSelectionRange(caret === -1 ? codeInput.value.length : caret, caret === -1 ? codeInput.value.length : caret);
    return true;
  }

  if (composer) {
    composer.addEventListener('submit', function (e) { e.preventDefault(); run(); });
    stopButton.addEventListener('click', function () { stop(); codeInput.focus(); });
    codeInput.addEventListener('input', function () { historyPos = codeInput.value ? historyPos : -1; autosize(); });
    codeInput.addEventListener('keydown', function (e) {
      if (e.key === 'Escape') {
        escapeArmed = true; // Esc then Tab leaves the editor (keyboard users must not be trapped)
        if (!codeInput.value && activeTurns().length) stop();
        return;
      }
      if (e.key === 'Enter' && (e.shiftKey || e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); return; }
      if (e.key === 'Tab' && !e.ctrlKey && !e.altKey && !e.metaKey) {
        if (escapeArmed) { escapeArmed = false; return; }
        e.preventDefault();
        reindent(e.shiftKey);
        return;
      }
      escapeArmed = false;
      if (e.key === 'Enter' && !e.isComposing) { e.preventDefault(); newlineWithIndent(); return; }
      if (e.key === 'ArrowUp' && !e.shiftKey) {
        var before = codeInput.value.slice(0, codeInput.selectionStart);
        if ((!codeInput.value || historyPos !== -1) && before.indexOf('\n') === -1 && recall(-1)) e.preventDefault();
        return;
      }
      if (e.key === 'ArrowDown' && !e.shiftKey && historyPos !== -1) {
        var after = codeInput.value.slice(codeInput.selectionEnd);
        if (after.indexOf('\n') === -1 && recall(1)) e.preventDefault();
      }
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Clicks: copy, edit & rerun, examples, folds, images, drawer, shortcuts
  // ---------------------------------------------------------------------------------------------
  function copyText(text, button) {
    var done = function () {
      var old = button.textContent;
      button.textContent = 'Copied';
      setTimeout(function () { button.textContent = old; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { legacyCopy(text); done(); });
    } else { legacyCopy(text); done(); }
  }
  function legacyCopy(text) {
    var area = el('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.appendChild(area);
    area.select();
    try { document.execCommand('copy'); } catch (e) { /* nothing more to try */ }
    area.remove();
  }

  function putInComposer(code, language) {
    if (!composer || codeInput.disabled) return;
    codeInput.value = code;
    if (language && $('option[value="' + language + '"]', languageSelect)) languageSelect.value = language;
    autosize();
    codeInput.focus();
    codeInput.setSelectionRange(code.length, code.length);
  }

  function setDrawer(open) {
    document.body.classList.toggle('drawer-open', open);
    var toggle = $('.drawer-toggle');
    if (toggle) toggle.setAttribute('aria-expanded', String(open));
    var scrim = $('.drawer-scrim');
    if (scrim) scrim.hidden = !open;
    if (open) { var first = $('#new-session'); if (first) first.focus(); } else if (toggle && document.activeElement && $('#sidebar').contains(document.activeElement)) toggle.focus();
  }

  document.addEventListener('click', function (e) {
    var target = e.target.closest('[data-action], [data-example]');
    var openMenu = $('#session-menu');
    if (openMenu && openMenu.open && !openMenu.contains(e.target)) openMenu.open = false;
    if (!target) return;
    if (target.getAttribute('data-action') === 'zoom') {
      var zoomed = target.closest('.out-image').classList.toggle('zoomed');
      target.setAttribute('aria-pressed', String(zoomed));
      target.setAttribute('aria-label', target.getAttribute('aria-label').replace(/: .*$/, zoomed ? ': fit to width' : ': show full size'));
      return;
    }
    if (target.hasAttribute('data-example')) {
      var ex = EXAMPLES[target.getAttribute('data-example')];
      if (ex) putInComposer(ex.code, ex.language);
      return;
    }
    var action = target.getAttribute('data-action');
    var li = target.closest('.turn');
    var turn = li ? turns.get(parseInt(li.getAttribute('data-execution-id'), 10)) : null;
    if (action === 'copy' && turn) copyText(turn.code, target);
    else if (action === 'rerun' && turn) putInComposer(turn.code, turn.language);
    else if (action === 'unfold') {
      var pre = target.previousElementSibling;
      var folded = pre.classList.toggle('folded');
      target.setAttribute('aria-expanded', String(!folded));
      var lines = pre.dataset.lines;
      target.textContent = folded ? (pre.classList.contains('traceback') ? 'Show full traceback' : 'Show all ' + lines + ' lines') : 'Show less';
    } else if (action === 'load-all' && turn) {
      target.disabled = true;
      target.textContent = 'Loading…';
      fetchFragment(outputUrl(turn.id)).then(function (fragment) {
        turn.output.replaceChildren(fragment);
        var last = turn.output.lastElementChild;
        turn.streamPre = last && last.matches('pre.stream') ? last : null;
        applyFolds(turn.output);
      }).catch(function () {
        target.disabled = false;
        target.textContent = 'Show all output';
        showMessage("Couldn't load the full output; try again.", 'fetch');
      });
    } else if (action === 'open-drawer') setDrawer(true);
    else if (action === 'close-drawer') setDrawer(false);
    else if (action === 'restart') {
      var sm = $('#session-menu');
      if (sm) sm.open = false;
      if (activeTurns().length) { showMessage('Stop the running code first, then restart the sandbox.', 'busy'); return; }
      var dialog = $('#restart-dialog');
      if (dialog) dialog.showModal();
    }
    else if (action === 'show-shortcuts') { var m = $('#session-menu'); if (m) m.open = false; openShortcuts(); }
  });

  function openShortcuts() { if (shortcuts && !shortcuts.open) shortcuts.showModal(); }

  document.addEventListener('keydown', function (e) {
    var t = e.target;
    var typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
    if (e.key === 'Escape') {
      var menu = $('#session-menu');
      if (menu && menu.open) { menu.open = false; $('summary', menu).focus(); }
      if (document.body.classList.contains('drawer-open')) setDrawer(false);
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === '?') { e.preventDefault(); openShortcuts(); }
    else if (e.key === '/' && codeInput && !codeInput.disabled) { e.preventDefault(); codeInput.focus(); }
  });

  // ---------------------------------------------------------------------------------------------
  // Sidebar: filter as you type, relative times; header: rename in place
  // ---------------------------------------------------------------------------------------------
  var filter = $('#session-filter');
  if (filter) {
    filter.addEventListener('input', function () {
      var q = filter.value.trim().toLowerCase();
      $all('#session-list li[data-title]').forEach(function (li) { li.hidden = q !== '' && li.getAttribute('data-title').indexOf(q) === -1; });
    });
  }
  function refreshTimes() {
    $all('time[data-relative]').forEach(function (t) { t.textContent = relativeText(new Date(t.getAttribute('datetime'))); });
  }
  setInterval(refreshTimes, 60000);

  var titleForm = $('#title-form');
  var titleInput = $('#title-input');
  if (titleForm && titleInput) {
    var savedTitle = titleInput.value;
    var saveTitle = function () {
      var title = titleInput.value.trim();
      if (!title) { titleInput.value = savedTitle; return; }
      if (title === savedTitle) return;
      var body = new FormData(titleForm);
      fetch(titleForm.action, { method: 'POST', body: body, credentials: 'same-origin', headers: { Accept: 'application/json' } })
        .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
        .then(function (res) {
          if (!res.ok || !res.body.ok) throw new Error(res.body.message || 'The title could not be saved.');
          savedTitle = res.body.title;
          titleInput.value = savedTitle;
          document.title = savedTitle + ' · Sandpit';
          var current = $('#session-list a[aria-current="page"]');
          if (current) {
            $('.session-title', current).textContent = savedTitle;
            current.parentElement.setAttribute('data-title', savedTitle.toLowerCase());
          }
        })
        .catch(function (err) { titleInput.value = savedTitle; showMessage(err.message || 'The title could not be saved.', 'rename'); });
    };
    titleForm.addEventListener('submit', function (e) { e.preventDefault(); saveTitle(); titleInput.blur(); });
    titleInput.addEventListener('blur', saveTitle);
    titleInput.addEventListener('keydown', function (e) {
      if (e.key === 'Escape') { titleInput.value = savedTitle; titleInput.blur(); }
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------------------------
  $all('#turns > li.turn').forEach(adoptTurn);
  $all('pre.code code').forEach(highlight);
  if (conversation) scrollToBottom();
  if (composer) {
    setCanRun(canRun, page.degraded_reason || 'the sandbox is unavailable');
    autosize();
    updateControls();
    if (canRun && !('ontouchstart' in window)) codeInput.focus({ preventScroll: true });
  }
  connect();
})();
