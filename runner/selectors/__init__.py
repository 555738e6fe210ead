"""Reads that span models or backends. Keyword-only, typed, named <entity>_<action>.

One module per area; everything is re-exported here so callers write `selectors.<name>`.
"""

from runner.selectors.health import SandboxStatus, sandbox_status

__all__ = ["SandboxStatus", "sandbox_status"]
