// DOM helpers and the page's JSON data block (#page-data); no state of the app.

export const page = (() => {
  const dataEl = document.getElementById('page-data');
  return dataEl ? JSON.parse(dataEl.textContent) : {};
})();

export function $(sel, root) { return (root || document).querySelector(sel); }
export function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

/* Copy `text`, then say "Copied" on `button` for 1.5 s. */
export function copyText(text, button) {
  const done = () => {
    const old = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = old; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => { legacyCopy(text); done(); });
  } else { legacyCopy(text); done(); }
}

function legacyCopy(text) {
  const area = el('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.appendChild(area);
  area.select();
  try { document.execCommand('copy'); } catch (e) { /* nothing more to try */ }
  area.remove();
}
