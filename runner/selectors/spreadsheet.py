"""CSV for spreadsheets: streamed lines, and formula escaping (CSV injection), shared by every CSV
the app serves (the usage CSV, grades)."""

from __future__ import annotations


class CsvEcho:
    """csv.writer's file: hands each formatted line back instead of storing it."""

    def write(self, value: str) -> str:
        return value


# A cell starting with one of these is a formula to a spreadsheet (CSV injection): it gets a "'".
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(cells: list[str]) -> list[str]:
    """The cells with any that a spreadsheet would run as a formula prefixed with "'"."""
    return [f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell for cell in cells]
