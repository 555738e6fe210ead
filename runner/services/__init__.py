"""Writes and workflows. Keyword-only, typed, named <entity>_<action>.

One module per area; everything is re-exported here so callers write `services.<name>`.
"""

from runner.services.sessions import session_create, session_rename

__all__: list[str] = [
    # sessions
    "session_create",
    "session_rename",
]
