"""The server render of ANSI colours (static/runner/ansi.js mirrors it in the page)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from django.conf import settings

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


# Each SGR sequence the page's parse() gets, as the classes of its text, from node (static/runner/ansi.js).
_JS_CLASSES = """
import { newState, parse } from './static/runner/ansi.js';
const seqs = JSON.parse(process.argv[1]);
console.log(JSON.stringify(seqs.map((s) => parse(`\\x1b[${s}mx`, newState())[0].cls)));
"""


def test_the_page_and_the_server_give_every_colour_code_the_same_classes() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the page's ansi.js can't be compared with the server render")
    seqs = [f"{kind};5;{n}" for kind in (38, 48) for n in range(256)]
    seqs += [f"38;2;{r};{g};{b}" for r in (0, 95, 128, 200, 255) for g in (0, 128, 255) for b in (0, 64, 255)]
    seqs += ["1;31", "2;3;4;92", "0", "", "22", "44;97"]
    found = subprocess.run(
        [node, "--experimental-default-type=module", "--input-type=module", "-e", _JS_CLASSES, json.dumps(seqs)],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60, check=True,
    )
    page = json.loads(found.stdout)
    server = [re.sub(r'^<span class="([^"]*)">x</span>$|^x$', r"\1", ansi_to_html(f"\x1b[{s}mx")) for s in seqs]
    assert dict(zip(seqs, page)) == dict(zip(seqs, server))
