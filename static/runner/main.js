// Entry module of the chat page: builds the pieces, wires them with callbacks, and routes the page's clicks.
import { Comments } from './comments.js';
import { Composer, languageLabel } from './composer.js';
import { $, $all, copyText, page } from './dom.js';
import { FilesPanel } from './files.js';
import { FrameHandler } from './frames.js';
import { showMessage } from './notices.js';
import { handleOutputClick, loadAllOutput } from './output.js';
import { PackagesDialog } from './packages.js';
import { followBottom, scrollIntoConversation, scrollToBottom } from './scroll.js';
import { SessionChrome } from './sidebar.js';
import { Socket } from './socket.js';
import { highlight, Turns } from './turns.js';
import { UsageMeter } from './usage.js';

document.documentElement.classList.add('js');

const turns = new Turns($('#turns'), languageLabel, { canRerun: page.access === 'owner', canComment: page.access === 'teacher' });
const socket = new Socket(page.ws_path, page.last, {
  onFrames: (frames) => {
    handler.applyBatch(frames); usageMeter.noteFrames(frames); files.noticeFrames(frames); chrome.sessionActivity(activeSince());
  },
  onOpen: () => composer.updateControls(),
  onClose: () => composer.refused(), // a run sent but not acknowledged keeps its code in the composer
  onRefused: (code) => {
    const refusal = page.access && page.access !== 'owner' ? 'You no longer have access to this session.' : 'You may not run code in this session.';
    showMessage(code === 4403 ? refusal : 'This session no longer exists.', 'forbidden');
    comments.disable();
    composer.setCanRun(false, code === 4403 ? 'this session is read-only for you' : 'the session is gone');
  }
});
const usageMeter = new UsageMeter($('#usage-meter'), page.usage_url);
const composer = new Composer($('#composer'), turns, socket, page);
const comments = new Comments(page);
const handler = new FrameHandler({
  turns, socket, composer, comments, pageCanRun: !!page.can_run, onTitle: (title) => chrome.titleChanged(title)
});
const files = new FilesPanel(page.files_url, page.file_max_bytes);
const packages = new PackagesDialog(page.packages_url, (code) => { composer.put(code, 'python'); composer.run(); });
const chrome = new SessionChrome({
  hasActiveRuns: () => turns.active().length > 0,
  focusEditor: () => composer.focusEditor()
});

/* When the session's oldest run still going started (ms; a queued one counts from when it was seen), or null. */
function activeSince() {
  const active = turns.active();
  if (!active.length) return null;
  return Math.min(...active.map((t) => t.startedAt || t.seenAt || (t.seenAt = Date.now())));
}

function loadAll(turn, button) {
  button.disabled = true;
  button.textContent = 'Loading…';
  loadAllOutput(turn).catch(() => {
    button.disabled = false;
    button.textContent = 'Show all output';
    showMessage("Couldn't load the full output; try again.", 'fetch');
  });
}

document.addEventListener('click', (e) => {
  chrome.clickedAt(e.target);
  const target = e.target.closest('[data-action], [data-example]');
  if (!target) return;
  const action = target.getAttribute('data-action');
  if (handleOutputClick(target, action)) return;
  if (files.action(action, target)) return;
  if (packages.action(action)) { chrome.closeMenu(); return; }
  if (target.hasAttribute('data-example')) { composer.putExample(target.getAttribute('data-example')); return; }
  const turn = turns.around(target);
  if (action === 'copy' && turn) copyText(turn.code, target);
  else if (action === 'rerun' && turn) composer.put(turn.code, turn.language);
  else if (action === 'comment-on' && turn) comments.commentOn(turn.id);
  else if (action === 'load-all' && turn) loadAll(turn, target);
  else chrome.action(action);
});

/* A link to one run (#run-<id>, e.g. a search result): scroll it into view and highlight it. */
function showLinkedRun() {
  const match = /^#run-(\d+)$/.exec(location.hash);
  const target = match && document.getElementById('run-' + match[1]);
  $all('#turns > li.turn.linked').forEach((t) => { if (t !== target) t.classList.remove('linked'); });
  if (!target) return false;
  target.classList.add('linked');
  scrollIntoConversation(target);
  return true;
}

const conversation = $('#conversation');
turns.adoptAll();
$all('pre.code code').forEach(highlight);
followBottom(conversation);
if (conversation && !showLinkedRun()) scrollToBottom();
comments.announceUnread();
window.addEventListener('hashchange', showLinkedRun);
// Images above the run grow the page as they load: put the linked run back in view.
window.addEventListener('load', () => { if (location.hash) showLinkedRun(); });
turns.startClocks();
composer.start(page.degraded_reason);
socket.connect();
