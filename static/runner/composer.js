// The composer: Run and Stop, the queued chip, whether this page may run code, and the example snippets.
import { $, $all } from './dom.js';
import { Editor } from './editor.js';
import { humanBytes, utf8Bytes } from './format.js';
import { clearMessages, setDegradedBanner, showMessage } from './notices.js';
import { scrollToBottom } from './scroll.js';

const EXAMPLES = {
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

function newClientId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return 'c' + Date.now().toString(36) + Math.random().toString(36).slice(2);
}

/* The label of `language` in the composer's language picker, or the language itself. */
export function languageLabel(language) {
  const select = $('#composer-language');
  const option = select && $('option[value="' + language + '"]', select);
  return option ? option.textContent : language;
}

export class Composer {
  /* `form` is #composer (null on a page without one: every method is then a no-op); `turns` the Turns;
     `socket` the Socket; `page` the page data (session_id, history, can_run). */
  constructor(form, turns, socket, page) {
    this.form = form;
    this.turns = turns;
    this.socket = socket;
    this.sessionId = page.session_id;
    this.canRun = !!page.can_run;
    this.codeMaxBytes = page.code_max_bytes || 0; // the server's RUN_CODE_MAX_BYTES
    this.pending = null; // {client_id, code}: sent, not yet acknowledged by execution.queued
    if (!form) return;
    this.input = $('#composer-code');
    this.languageSelect = $('#composer-language');
    this.runButton = $('#run-button');
    this.stopButton = $('#stop-button');
    this.queuedChip = $('#queued-chip');
    this.hint = $('#composer-hint');
    this.editor = new Editor(this.input, page.history || [], {
      onRun: () => this.run(),
      onEscape: () => { if (this.turns.active().length) this.stop(); },
      onChange: () => this.updateControls()
    });
    form.addEventListener('submit', (e) => { e.preventDefault(); this.run(); });
    this.stopButton.addEventListener('click', () => { this.stop(); this.input.focus(); });
  }

  run() {
    if (!this.form) return;
    const code = this.editor.value;
    if (!code.trim()) { this.input.focus(); return; }
    if (!this.canRun) return;
    // Decided here, in the server's words: code far over the limit would make a frame over the socket's own
    // limit (1 MiB), which drops the connection instead of getting the server's answer.
    const size = this.codeMaxBytes ? utf8Bytes(code) : 0;
    if (size > this.codeMaxBytes) {
      showMessage('The code is ' + humanBytes(size) + '; the limit is ' + humanBytes(this.codeMaxBytes) + '.', 'bad_request');
      this.input.focus();
      return;
    }
    const frame = { type: 'run', code: code, language: this.languageSelect.value, client_id: newClientId() };
    if (!this.socket.send(frame)) {
      showMessage('Not connected right now; your code is still here. Reconnecting…', 'offline');
      return;
    }
    this.pending = { client_id: frame.client_id, code: code };
    this.editor.remember(code);
    this.editor.clear();
    clearMessages();
    scrollToBottom();
    this.updateControls();
  }

  /* Stop the running run (or the oldest queued one). */
  stop() {
    const active = this.turns.active();
    const target = active.filter((t) => t.status === 'running')[0] || active[0];
    if (target) this.socket.send({ type: 'stop', execution_id: target.id });
  }

  /* An `execution.queued` frame for our own run: it was accepted. */
  acknowledge(clientId) {
    if (this.pending && clientId === this.pending.client_id) this.pending = null;
  }

  /* A new run in the session (anyone's) joins the editor's history. */
  remember(code) {
    if (this.editor) this.editor.remember(code);
  }

  /* An error frame, or the socket closed before the run was acknowledged: give the code back rather than lose it. */
  refused() {
    if (!this.pending) return;
    if (this.editor && !this.editor.value.trim()) this.editor.set(this.pending.code);
    this.pending = null;
  }

  /* Put code in the editor (an example, "Edit & rerun"), caret at the end. */
  put(code, language) {
    if (!this.form || this.input.disabled) return;
    this.editor.set(code);
    if (language && $('option[value="' + language + '"]', this.languageSelect)) this.languageSelect.value = language;
    this.input.focus();
    this.input.setSelectionRange(code.length, code.length);
  }

  putExample(name) {
    const ex = EXAMPLES[name];
    if (ex) this.put(ex.code, ex.language);
  }

  focusEditor() {
    if (!this.form || this.input.disabled) return false;
    this.input.focus();
    return true;
  }

  updateControls() {
    if (!this.form) return;
    const active = this.turns.active();
    const waiting = this.turns.labelQueued();
    this.stopButton.hidden = active.length === 0;
    this.runButton.hidden = active.length > 0 && !this.input.value.trim();
    this.queuedChip.hidden = waiting === 0;
    this.queuedChip.textContent = waiting + ' queued';
    this.runButton.disabled = !this.canRun;
    const dot = $('.running-dot[data-session-id="' + this.sessionId + '"]');
    if (dot) dot.hidden = active.length === 0;
  }

  /* Allow or refuse running code; `reason` says why not, `readOnly` that it is this user's role. */
  setCanRun(ok, reason, readOnly) {
    this.canRun = ok;
    if (!this.form) return;
    const input = this.input;
    input.disabled = !ok;
    this.languageSelect.disabled = !ok;
    this.runButton.disabled = !ok;
    $all('[data-example]').forEach((b) => { b.disabled = !ok; });
    if (!ok && readOnly) {
      this.hint.textContent = 'Read-only: ' + reason;
      input.placeholder = 'Read-only: ' + reason;
      setDegradedBanner(undefined);
    } else if (!ok) {
      this.hint.textContent = 'Running is off: ' + reason;
      input.placeholder = "Code can't run right now: " + reason;
      setDegradedBanner(reason);
    } else {
      // A phone has no Shift+Enter to speak of: say what to tap.
      const touch = window.matchMedia('(pointer: coarse)').matches;
      this.hint.textContent = touch ? 'Tap Run to run your code' : 'Shift+Enter to run · ↑ for previous';
      input.placeholder = touch ? 'Type code, then tap Run' : 'Type code, then Shift+Enter to run';
      setDegradedBanner(null);
    }
  }

  /* First paint: apply the page's own verdict, size the editor, and focus it on a desktop. */
  start(degradedReason) {
    if (!this.form) return;
    this.setCanRun(this.canRun, degradedReason || 'the sandbox is unavailable');
    this.editor.autosize();
    this.updateControls();
    if (this.canRun && !('ontouchstart' in window)) this.input.focus({ preventScroll: true });
  }
}
