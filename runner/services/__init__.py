"""Writes and workflows. Keyword-only, typed, named <entity>_<action>.

One module per area; everything is re-exported here so callers write `services.<name>`.
"""

__all__: list[str] = []
