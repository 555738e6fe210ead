// ANSI SGR colours → class names, matching runner/selectors/rendering.py (the server render).
// Text is never parsed as HTML: callers put each segment in a text node inside a span.
// CSI (colours, cursor moves), OSC (titles, links) and other two-byte escapes; only SGR ("m") is kept.
const ESCAPE_RE = /\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

export function newState() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
}

function nearestBaseColour(n) {
  if (n < 16) return Math.max(n, 0);
  if (n >= 232) { var level = n - 232; return level < 6 ? 0 : level < 12 ? 8 : level < 18 ? 7 : 15; }
  var r = Math.floor((n - 16) / 36), g = Math.floor((n - 16) / 6) % 6, b = (n - 16) % 6;
  var top = Math.max(r, g, b);
  if (top < 2 || (r === g && g === b)) return top === 0 ? 0 : top <= 2 ? 8 : top <= 4 ? 7 : 15;  // dark or grey
  var on = Math.max(2, top - 1);  // the channels near the brightest one give the hue
  var base = (r >= on ? 1 : 0) | (g >= on ? 2 : 0) | (b >= on ? 4 : 0);
  return top >= 4 ? base + 8 : base;
}

function apply(state, params) {
  var codes = params ? params.split(';').map(function (p) { return /^\d+$/.test(p) ? parseInt(p, 10) : 0; }) : [0];
  for (var i = 0; i < codes.length; i++) {
    var c = codes[i];
    if (c === 0) { Object.assign(state, newState()); }
    else if (c === 1) { state.bold = true; }
    else if (c === 2) { state.dim = true; }
    else if (c === 3) { state.italic = true; }
    else if (c === 4) { state.underline = true; }
    else if (c === 22) { state.bold = false; state.dim = false; }
    else if (c === 23) { state.italic = false; }
    else if (c === 24) { state.underline = false; }
    else if (c >= 30 && c <= 37) { state.fg = String(c - 30); }
    else if (c >= 90 && c <= 97) { state.fg = String(c - 90 + 8); }
    else if (c === 39) { state.fg = null; }
    else if (c >= 40 && c <= 47) { state.bg = String(c - 40); }
    else if (c >= 100 && c <= 107) { state.bg = String(c - 100 + 8); }
    else if (c === 49) { state.bg = null; }
    else if ((c === 38 || c === 48) && i + 1 < codes.length) {
      // 256-colour and true-colour map to the nearest of the 16 theme colours (as rendering.py).
      var attr = c === 38 ? 'fg' : 'bg';
      if (codes[i + 1] === 5 && i + 2 < codes.length) {
        state[attr] = String(nearestBaseColour(codes[i + 2]));
        i += 2;
      } else if (codes[i + 1] === 2 && i + 4 < codes.length) {
        var rgb = codes.slice(i + 2, i + 5).map(function (v) { return Math.floor(Math.min(v, 255) * 6 / 256); });
        state[attr] = String(nearestBaseColour(16 + 36 * rgb[0] + 6 * rgb[1] + rgb[2]));
        i += 4;
      }
    }
  }
}

function classes(state) {
  var names = [];
  if (state.fg !== null) names.push('ansi-fg-' + state.fg);
  if (state.bg !== null) names.push('ansi-bg-' + state.bg);
  if (state.bold) names.push('ansi-bold');
  if (state.dim) names.push('ansi-dim');
  if (state.italic) names.push('ansi-italic');
  if (state.underline) names.push('ansi-underline');
  return names.join(' ');
}

/* Split `text` into [{text, cls}] segments, carrying `state` across calls (one state per stream). */
export function parse(text, state) {
  var out = [];
  var pos = 0;
  var match;
  ESCAPE_RE.lastIndex = 0;
  while ((match = ESCAPE_RE.exec(text)) !== null) {
    if (match.index > pos) out.push({ text: text.slice(pos, match.index), cls: classes(state) });
    pos = ESCAPE_RE.lastIndex;
    if (match[2] === 'm') apply(state, match[1] || '');
  }
  if (pos < text.length) out.push({ text: text.slice(pos), cls: classes(state) });
  return out;
}

/* Append `text` to `parent` as text nodes inside spans; extends the last span when the classes match. */
export function append(parent, text, state, extraClass) {
  var segments = parse(text, state);
  for (var i = 0; i < segments.length; i++) {
    var seg = segments[i];
    var cls = extraClass ? (extraClass + (seg.cls ? ' ' + seg.cls : '')) : seg.cls;
    var last = parent.lastChild;
    if (last && last.nodeType === 1 && last.tagName === 'SPAN' && last.className === cls && last.lastChild && last.lastChild.nodeType === 3) {
      last.lastChild.appendData(seg.text);
    } else if (!cls) {
      parent.appendChild(document.createTextNode(seg.text));
    } else {
      var span = document.createElement('span');
      span.className = cls;
      span.appendChild(document.createTextNode(seg.text));
      parent.appendChild(span);
    }
  }
}
