"""Package names, checked once for every backend (runner.sandboxes.base.validate_packages)."""

from __future__ import annotations

import pytest

from runner.sandboxes.base import validate_packages


def test_plain_requirements_and_npm_names_pass() -> None:
    assert validate_packages(["requests>=2,<3", "rich[jupyter]==13.9.4"], language="python") == ["requests>=2,<3", "rich[jupyter]==13.9.4"]
    assert validate_packages(["@types/node", "left-pad@1.3.0"], language="typescript") == ["@types/node", "left-pad@1.3.0"]


@pytest.mark.parametrize("name", ["requests\n", "requests\n--index-url=http://x", " requests"])
def test_a_name_with_a_line_break_or_space_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a package name"):
        validate_packages([name], language="python")


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported language"):
        validate_packages(["six"], language="cobol")
