// Following the conversation's bottom: new output scrolls it only while the reader is at the bottom.

let conversation = null;
let atBottom = true;

export function isAtBottom() { return atBottom; }

export function scrollToBottom() {
  if (!conversation) return;
  conversation.scrollTop = conversation.scrollHeight;
  atBottom = true;
}

/* Scroll the conversation (only it, never the page) so `element`'s top sits near its top. */
export function scrollIntoConversation(element) {
  if (!conversation) return;
  const offset = element.getBoundingClientRect().top - conversation.getBoundingClientRect().top;
  conversation.scrollTop += offset - 16;
  atBottom = conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 48;
}

export function followBottom(element) {
  conversation = element;
  if (!conversation) return;
  conversation.addEventListener('scroll', () => {
    atBottom = conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 48;
  }, { passive: true });
  // Images (and sanitised HTML) grow the page after they load: stay pinned if the reader was.
  conversation.addEventListener('load', (e) => {
    if (e.target.tagName === 'IMG' && atBottom) scrollToBottom();
  }, true);
}
