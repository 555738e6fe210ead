"""Turning stored output into safe HTML for the server-rendered page.

Everything here returns markup that is safe to insert: plain text is escaped, ANSI colour codes become
spans with fixed class names (the page's JS uses the same names), and rich HTML or markdown from user
code goes through nh3 with a small allow-list, so it can never run script in the page.
"""

from __future__ import annotations

import html
import re

import nh3

# CSI sequences (colours, cursor moves) and OSC sequences (titles, hyperlinks): SGR ones are kept.
_ESCAPE_RE = re.compile(r"\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")

_RICH_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details",
    "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
    "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
}
# No `class`, `id`, `name` or `style` from user HTML: page classes such as .toast would let it dress up
# as the page's own controls, and ids could clobber the page's elements.
_RICH_ATTRIBUTES = {
    "*": {"title", "align"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
}


def nearest_base_colour(n: int) -> int:
    """The nearest of the 16 base ANSI colours to xterm-256 colour `n` (as static/runner/ansi.js)."""
    if n < 16:
        return max(n, 0)
    if n >= 232:  # the grey ramp
        level = n - 232
        return 0 if level < 6 else 8 if level < 12 else 7 if level < 18 else 15
    r, g, b = (n - 16) // 36, (n - 16) // 6 % 6, (n - 16) % 6
    top = max(r, g, b)
    if top < 2 or r == g == b:  # dark or grey
        return 0 if top == 0 else 8 if top <= 2 else 7 if top <= 4 else 15
    on = max(2, top - 1)  # the channels near the brightest one give the hue
    base = (1 if r >= on else 0) | (2 if g >= on else 0) | (4 if b >= on else 0)
    return base + 8 if top >= 4 else base


class AnsiState:
    """The SGR state carried from one piece of a stream to the next."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to no attributes (SGR 0)."""
        self.fg: str | None = None
        self.bg: str | None = None
        self.bold = False
        self.dim = False
        self.italic = False
        self.underline = False

    def apply(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                self.reset()
            elif c == 1:
                self.bold = True
            elif c == 2:
                self.dim = True
            elif c == 3:
                self.italic = True
            elif c == 4:
                self.underline = True
            elif c == 22:
                self.bold = self.dim = False
            elif c == 23:
                self.italic = False
            elif c == 24:
                self.underline = False
            elif 30 <= c <= 37:
                self.fg = str(c - 30)
            elif 90 <= c <= 97:
                self.fg = str(c - 90 + 8)
            elif c == 39:
                self.fg = None
            elif 40 <= c <= 47:
                self.bg = str(c - 40)
            elif 100 <= c <= 107:
                self.bg = str(c - 100 + 8)
            elif c == 49:
                self.bg = None
            elif c in (38, 48) and i + 1 < len(codes):
                # 256-colour and true-colour map to the nearest of the 16 theme colours, so both themes stay legible.
                attr = "fg" if c == 38 else "bg"
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    setattr(self, attr, str(nearest_base_colour(codes[i + 2])))
                    i += 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    r, g, b = (min(v, 255) * 6 // 256 for v in codes[i + 2 : i + 5])
                    setattr(self, attr, str(nearest_base_colour(16 + 36 * r + 6 * g + b)))
                    i += 4
            i += 1

    def classes(self) -> str:
        names = []
        if self.fg is not None:
            names.append(f"ansi-fg-{self.fg}")
        if self.bg is not None:
            names.append(f"ansi-bg-{self.bg}")
        if self.bold:
            names.append("ansi-bold")
        if self.dim:
            names.append("ansi-dim")
        if self.italic:
            names.append("ansi-italic")
        if self.underline:
            names.append("ansi-underline")
        return " ".join(names)


def ansi_to_html(text: str, state: AnsiState | None = None) -> str:
    """Escape `text` and turn its SGR colour codes into `<span class="ansi-...">`; drop other escapes."""
    state = state or AnsiState()
    out: list[str] = []
    pos = 0

    def emit(piece: str) -> None:
        if not piece:
            return
        cls = state.classes()
        escaped = html.escape(piece, quote=False)
        out.append(f'<span class="{cls}">{escaped}</span>' if cls else escaped)

    for match in _ESCAPE_RE.finditer(text):
        emit(text[pos : match.start()])
        pos = match.end()
        if match.group(2) == "m":
            state.apply(match.group(1) or "")
    emit(text[pos:])
    return "".join(out)


def strip_ansi(text: str) -> str:
    return _ESCAPE_RE.sub("", text)


def sanitize_rich_html(markup: str) -> str:
    """User-produced HTML (DataFrame tables, display(HTML(...))) reduced to inert markup."""
    return nh3.clean(
        markup,
        tags=_RICH_TAGS,
        attributes=_RICH_ATTRIBUTES,
        allowed_classes={"table": {"dataframe"}},
        url_schemes={"http", "https", "data", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def markdown_to_safe_html(text: str) -> str:
    """Markdown from user code, rendered then sanitised (raw HTML inside it goes through nh3 too)."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # without the renderer, show the source rather than nothing
        return f"<pre>{html.escape(text)}</pre>"
    return sanitize_rich_html(MarkdownIt("commonmark").enable("table").render(text))
