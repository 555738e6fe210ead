"""This process's identity: the boot id that names it as the owner of runs and leases, and its host.

At the bottom of runner (it imports nothing of it), so selectors and services alike may use it.
"""

from __future__ import annotations

import socket
import uuid

BOOT_ID = uuid.uuid4().hex
HOSTNAME = socket.gethostname()[:255]

__all__ = ["BOOT_ID", "HOSTNAME"]
