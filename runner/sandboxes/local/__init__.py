"""The local backend: real Jupyter kernels isolated with bubblewrap (see backend.LocalBackend)."""

from runner.sandboxes.local.backend import LocalBackend

__all__ = ["LocalBackend"]
