// The code editor (the composer's textarea): indentation, Enter/Shift+Enter, Esc, history recall, autosize.

const INDENT = '    ';

function lineStart(value, pos) { return value.lastIndexOf('\n', pos - 1) + 1; }

export class Editor {
  /* `input` is the textarea; `history` earlier code, oldest first. Callbacks: onRun() (Shift+Enter),
     onEscape() (Esc in an empty editor), onChange() (after the text or its height changed). */
  constructor(input, history, { onRun, onEscape, onChange }) {
    this.input = input;
    this.history = history.slice();
    this.historyPos = -1;
    this.escapeArmed = false;
    this.onRun = onRun;
    this.onEscape = onEscape;
    this.onChange = onChange;
    input.addEventListener('input', () => { this.historyPos = input.value ? this.historyPos : -1; this.autosize(); });
    input.addEventListener('keydown', (e) => this.keydown(e));
  }

  get value() { return this.input.value; }

  /* Replace the editor's text (an example, "Edit & rerun", a refused run given back). */
  set(code) {
    this.input.value = code;
    this.autosize();
  }

  clear() {
    this.set('');
    this.historyPos = -1;
  }

  remember(code) {
    if (!code || !code.trim()) return;
    if (this.history[this.history.length - 1] !== code) this.history.push(code);
  }

  autosize() {
    const input = this.input;
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight + 2, window.innerHeight * 0.4) + 'px';
    this.onChange();
  }

  insertText(text) {
    const input = this.input;
    input.focus();
    // execCommand keeps the browser's undo stack; setRangeText is the fallback.
    if (!document.execCommand || !document.execCommand('insertText', false, text)) {
      input.setRangeText(text, input.selectionStart, input.selectionEnd, 'end');
      input.dispatchEvent(new Event('input'));
    }
  }

  reindent(dedent) {
    const input = this.input;
    const value = input.value;
    const start = input.selectionStart;
    const end = input.selectionEnd;
    const first = lineStart(value, start);
    const multi = value.slice(start, end).indexOf('\n') !== -1;
    if (!dedent && !multi) { this.insertText(INDENT.slice(0, INDENT.length - ((start - first) % INDENT.length))); return; }
    const blockEnd = end > start && value[end - 1] === '\n' ? end - 1 : end;
    const lines = value.slice(first, blockEnd).split('\n');
    let firstDelta = 0;
    let total = 0;
    const changed = lines.map((line, i) => {
      if (dedent) {
        const m = line.match(/^( {1,4}|\t)/);
        const cut = m ? m[0].length : 0;
        if (i === 0) firstDelta = -Math.min(cut, start - first);
        total -= cut;
        return line.slice(cut);
      }
      if (i === 0) firstDelta = INDENT.length;
      total += INDENT.length;
      return INDENT + line;
    }).join('\n');
    input.setSelectionRange(first, blockEnd);
    this.insertText(changed);
    input.setSelectionRange(Math.max(first, start + firstDelta), end + total);
  }

  newlineWithIndent() {
    const value = this.input.value;
    const start = this.input.selectionStart;
    const line = value.slice(lineStart(value, start), start);
    let indent = (line.match(/^[ \t]*/) || [''])[0];
    if (/[:({\[]\s*$/.test(line)) indent += INDENT;
    this.insertText('\n' + indent);
  }

  recall(direction) {
    const input = this.input;
    if (!this.history.length) return false;
    if (direction < 0) this.historyPos = this.historyPos === -1 ? this.history.length - 1 : Math.max(0, this.historyPos - 1);
    else {
      if (this.historyPos === -1) return false;
      this.historyPos += 1;
      if (this.historyPos >= this.history.length) { this.historyPos = -1; input.value = ''; this.autosize(); return true; }
    }
    input.value = this.history[this.historyPos];
    this.autosize();
    const caret = direction < 0 ? input.value.indexOf('\n') : input.value.length;
    input.setSelectionRange(caret === -1 ? input.value.length : caret, caret === -1 ? input.value.length : caret);
    return true;
  }

  keydown(e) {
    const input = this.input;
    if (e.key === 'Escape') {
      this.escapeArmed = true; // Esc then Tab leaves the editor (keyboard users must not be trapped)
      if (!input.value) this.onEscape();
      return;
    }
    if (e.key === 'Enter' && (e.shiftKey || e.ctrlKey || e.metaKey)) { e.preventDefault(); this.onRun(); return; }
    if (e.key === 'Tab' && !e.ctrlKey && !e.altKey && !e.metaKey) {
      if (this.escapeArmed) { this.escapeArmed = false; return; }
      e.preventDefault();
      this.reindent(e.shiftKey);
      return;
    }
    this.escapeArmed = false;
    if (e.key === 'Enter' && !e.isComposing) { e.preventDefault(); this.newlineWithIndent(); return; }
    if (e.key === 'ArrowUp' && !e.shiftKey) {
      const before = input.value.slice(0, input.selectionStart);
      if ((!input.value || this.historyPos !== -1) && before.indexOf('\n') === -1 && this.recall(-1)) e.preventDefault();
      return;
    }
    if (e.key === 'ArrowDown' && !e.shiftKey && this.historyPos !== -1) {
      const after = input.value.slice(input.selectionEnd);
      if (after.indexOf('\n') === -1 && this.recall(1)) e.preventDefault();
    }
  }
}
