"""The server render of ANSI colours (static/runner/ansi.js mirrors it in the page)."""

from __future__ import annotations

from runner.selectors.rendering import ansi_to_html, nearest_base_colour


def test_256_colour_codes_map_to_the_nearest_theme_colour() -> None:
    assert ansi_to_html("\x1b[38;5;196mred\x1b[0m") == '<span class="ansi-fg-9">red</span>'
    assert ansi_to_html("\x1b[38;5;28mgreen\x1b[0m") == '<span class="ansi-fg-2">green</span>'


def test_true_colour_codes_map_to_the_nearest_theme_colour() -> None:
    assert ansi_to_html("\x1b[48;2;0;0;255mblue\x1b[0m") == '<span class="ansi-bg-12">blue</span>'


def test_the_grey_ramp_maps_to_black_grey_or_white() -> None:
    assert [nearest_base_colour(n) for n in (232, 240, 248, 255)] == [0, 8, 7, 15]


def test_colour_codes_never_let_text_through_as_html() -> None:
    assert ansi_to_html("\x1b[38;5;9m<b>x</b>") == '<span class="ansi-fg-9">&lt;b&gt;x&lt;/b&gt;</span>'
