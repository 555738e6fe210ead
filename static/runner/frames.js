// Applies the server's frames (hello, execution.queued/starting/started/output/finished, comment.*, sandbox.state, error) to the page.
import { $ } from './dom.js';
import { humanBytes } from './format.js';
import { closeInputPrompt, showInputPrompt } from './input.js';
import { appendError, appendNote, appendResult, appendStream } from './output.js';
import { sandboxStateIs, setSandboxState, showMessage } from './notices.js';
import { isAtBottom, scrollToBottom } from './scroll.js';
import { isActive } from './turns.js';

const NOTICE_MARKER = 'sandpit/notice'; // runner/services/output.py: a chunk the server wrote, not the code

export class FrameHandler {
  /* `pageCanRun`: whether the sandbox could run when the page was rendered (health). */
  constructor({ turns, socket, composer, comments, pageCanRun, onTitle }) {
    this.onTitle = onTitle || (() => {}); // the server named the session from its first run
    this.turns = turns;
    this.comments = comments;
    this.socket = socket;
    this.composer = composer;
    this.pageCanRun = pageCanRun;
    this.unavailable = false; // an `unavailable` error frame: the sandbox went away after the page loaded
  }

  /* One batch from the socket, in arrival order; a frame that fails is logged and skipped. */
  applyBatch(frames) {
    const wasAtBottom = isAtBottom();
    for (const frame of frames) {
      try { this.apply(frame); } catch (err) { if (window.console) console.error('frame failed', frame, err); }
    }
    this.composer.updateControls();
    if (wasAtBottom) scrollToBottom();
  }

  apply(frame) {
    switch (frame.type) {
      case 'hello': return this.hello(frame);
      case 'execution.queued': return this.queued(frame);
      case 'execution.starting': return this.starting(frame);
      case 'execution.started': return this.started(frame);
      case 'execution.output': return this.output(frame);
      case 'execution.finished': return this.finished(frame);
      case 'comment.added':
      case 'comment.changed':
      case 'comment.deleted': return this.comments.apply(frame);
      case 'execution.input_request': return this.inputRequest(frame);
      case 'execution.held': return this.held(frame);
      case 'error': return this.error(frame);
      case 'sandbox.state': return setSandboxState(frame.state, frame.text);
      default: return undefined;
    }
  }

  hello(frame) {
    // The page knows whether the sandbox can run (health); hello knows whether this user may.
    if (!this.pageCanRun) return;
    if (!frame.can_run) this.composer.setCanRun(false, 'you can watch this session but not run code in it', true);
    else if (!this.composer.canRun && !this.unavailable) this.composer.setCanRun(true);
  }

  queued(frame) {
    this.composer.acknowledge(frame.client_id);
    if (frame.session_title) this.onTitle(frame.session_title);
    if (this.turns.get(frame.execution_id)) return;
    this.turns.add(frame);
    this.comments.runAdded(frame);
    const empty = $('#empty-session');
    if (empty) empty.hidden = true;
    this.composer.remember(frame.code);
    if (!sandboxStateIs('ready')) setSandboxState('starting');
  }

  /* The run waits for its sandbox (in line for room, or while it starts): its own state until it runs. */
  starting(frame) {
    const turn = this.turns.get(frame.execution_id);
    if (!turn || !isActive(turn) || turn.lastIndex >= 0) return;
    this.turns.markStarting(turn, frame);
    setSandboxState('starting');
  }

  started(frame) {
    const turn = this.turns.get(frame.execution_id);
    if (!turn || !isActive(turn)) return;
    this.turns.markRunning(turn, frame.notice);
    this.comments.runStatus(turn.id, 'running…');
    setSandboxState('ready');
  }

  output(frame) {
    const turn = this.turns.get(frame.execution_id);
    if (!turn || !this.socket.admit(turn, frame.index)) return;
    // Output means it runs, even if its `started` frame fell between the page render and the socket.
    if (turn.status === 'queued' || turn.startingSince) this.started({ execution_id: turn.id });
    turn.lastIndex = frame.index;
    turn.el.setAttribute('data-last-index', String(frame.index));
    this.socket.advance(frame.execution_id, frame.index);
    const marker = frame.data && frame.data[NOTICE_MARKER];
    const stream = frame.kind === 'stdout' || frame.kind === 'stderr';
    if (marker && stream) appendNote(turn, marker, frame.text || '');
    else if (stream) appendStream(turn, frame.kind, frame.text || '');
    else if (frame.kind === 'error') appendError(turn, frame);
    else appendResult(turn, frame);
  }

  /* The run's output passed the cap's head: say that its last lines come when it ends (not stored: live only). */
  held(frame) {
    const turn = this.turns.get(frame.execution_id);
    if (!turn || !isActive(turn) || $('.held', turn.output)) return;
    appendNote(turn, 'held', 'Output past ' + humanBytes(frame.head_bytes) + ' is held: the last ' +
      humanBytes(frame.tail_bytes) + ' show when the run ends.');
  }

  /* The run's input() waits for a line: an inline field sends it back as `input_reply`. */
  inputRequest(frame) {
    const turn = this.turns.get(frame.execution_id);
    if (!turn || !isActive(turn)) return;
    showInputPrompt(turn, frame, (value) => this.socket.send({ type: 'input_reply', execution_id: turn.id, value: value }));
  }

  finished(frame) {
    const turn = this.turns.get(frame.execution_id);
    if (turn) closeInputPrompt(turn);
    const held = turn && $('.out-note.held', turn.output);
    if (held) held.remove(); // the marker and the tail are in now
    if (!turn || !isActive(turn)) return;
    this.comments.runStatus(turn.id, this.turns.markFinished(turn, frame));
    this.socket.finished(turn);
  }

  error(frame) {
    showMessage(frame.message || 'Something went wrong.', frame.code);
    this.composer.refused();
    if (frame.code === 'unavailable') { this.unavailable = true; this.composer.setCanRun(false, frame.message); }
  }
}
