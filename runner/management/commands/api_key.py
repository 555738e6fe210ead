"""`manage.py api_key create <username> [--name NAME]` prints only the new key (for scripts and CI);
`manage.py api_key revoke <username> <name>` revokes that user's live key of that name."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runner import services


class Command(BaseCommand):
    help = "Create or revoke a key for the E2B-compatible API."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="make a key and print it (only the key)")
        create.add_argument("username")
        create.add_argument("--name", default="", help="a name to tell the key apart (default: key N)")
        revoke = actions.add_parser("revoke", help="revoke a user's key by name")
        revoke.add_argument("username")
        revoke.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(username=options["username"])
        except User.DoesNotExist:
            raise CommandError(f"no user named {options['username']!r}") from None
        if options["action"] == "create":
            try:
                _row, key = services.api_key_create(owner=user, name=options["name"])
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from None
            self.stdout.write(key)
        elif not services.api_key_revoke(owner=user, name=options["name"]):
            raise CommandError(f"{user.username} has no live key named {options['name']!r}")
