// Toasts and banners: the "Reconnecting…" toast, messages near the composer, the degraded banner, the sandbox chip.
import { $, $all, el } from './dom.js';

const toast = $('#toast');
const messagesEl = $('#composer-messages');
const sandboxState = $('#sandbox-state');

export function showToast(show) { if (toast) toast.hidden = !show; }

/* An inline, dismissible message near the composer (never alert()); at most three are kept. */
export function showMessage(text, code) {
  if (!messagesEl) return;
  const box = el('div', 'composer-message');
  box.setAttribute('role', 'alert');
  if (code) box.setAttribute('data-code', code);
  box.appendChild(el('p', null, text));
  const close = el('button', null, '✕');
  close.type = 'button';
  close.setAttribute('aria-label', 'Dismiss this message');
  close.addEventListener('click', () => {
    box.remove();
    const editor = $('#composer-code'); // dismissing hands the keyboard back to the editor
    if (editor) editor.focus();
  });
  box.appendChild(close);
  while (messagesEl.children.length >= 3) messagesEl.removeChild(messagesEl.firstChild);
  messagesEl.appendChild(box);
}

export function clearMessages() {
  if (messagesEl) $all('.composer-message', messagesEl).forEach((m) => m.remove());
}

/* The banner saying code can't run because of `reason` (a string); null removes it, undefined leaves it. */
export function setDegradedBanner(reason) {
  let banner = $('.banner-degraded');
  if (typeof reason === 'string' && !banner) {
    banner = el('div', 'banner banner-degraded', "Code can't run right now: " + reason.replace(/[.\s]+$/, '') + '. Your history is still here.');
    banner.setAttribute('role', 'alert');
    document.body.insertBefore(banner, document.body.firstChild.nextSibling);
    document.body.classList.add('degraded');
  } else if (reason === null && banner) {
    banner.remove();
    document.body.classList.remove('degraded');
  }
  if (banner) document.documentElement.style.setProperty('--banner-h', banner.offsetHeight + 'px');
}

export function sandboxStateIs(state) { return !!sandboxState && sandboxState.getAttribute('data-state') === state; }

/* The header's sandbox chip (runner/views/sessions.py renders the same words); `text` is the
   server's words for a close ("stopped by an administrator", "closed · starts on your next run"). */
export function setSandboxState(state, text) {
  if (!sandboxState) return;
  sandboxState.setAttribute('data-state', state);
  sandboxState.textContent = text || (state === 'ready' ? 'ready' : state === 'starting' ? 'starting your sandbox…' : 'closed when idle · starts on your next run');
}
