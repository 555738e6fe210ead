"""A session's title from its first run's code (issue 14)."""

from __future__ import annotations

import pytest

from runner.services.admission import TITLE_FROM_CODE_MAX_CHARS, session_title_from_code


@pytest.mark.parametrize(
    ("code", "title"),
    [
        ("print('hi')", "print('hi')"),
        ("# Load the data\nimport pandas as pd", "Load the data"),
        ("import numpy as np\n\nx = np.arange(10)\n", "x = np.arange(10)"),
        ("#!/bin/bash\n# count files\nls | wc -l", "count files"),
        ("// sum an array\nconst a = [1, 2];", "sum an array"),
        ("%pip install requests", "%pip install requests"),
        ("#\n#   \nprint(1)", "print(1)"),
        ("   \n\tfor i in range(3):   print(i)\n", "for i in range(3): print(i)"),
    ],
)
def test_the_title_is_the_first_meaningful_line_or_comment(code: str, title: str) -> None:
    assert session_title_from_code(code=code) == title


def test_a_long_line_is_shortened_with_an_ellipsis() -> None:
    title = session_title_from_code(code="x = " + "1 + " * 100 + "1")
    assert len(title) == TITLE_FROM_CODE_MAX_CHARS and title.endswith("…")
