"""What a change to a user's credentials ends at once, wherever it was made (the admin, the
password views, `manage.py changepassword`, the shell): deactivation ends their API sandboxes
(lease reason "revoked"), and deactivation or a new password closes their open sockets (4401)."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.db import transaction

from runner import events
from runner.services.apikeys import api_sandboxes_end_now
from runner.services.output import publish


def user_credentials_changed(*, user_id: int, deactivated: bool) -> None:
    """Call after saving the user: when `deactivated`, end their live API sandboxes (the expiry
    kills them within seconds); after the transaction commits, close every socket they have open."""
    if deactivated:
        api_sandboxes_end_now(owner_id=user_id)

    def close_sockets() -> None:  # best effort, as every publish: a socket also re-checks when it joins
        message: events.AuthRevokedMessage = {"type": "auth.revoked"}
        async_to_sync(publish)(events.user_group(user_id), dict(message))

    transaction.on_commit(close_sockets)
