"""Create the demo accounts if they are absent, and print their logins once, when created."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_ACCOUNTS = [
    # (username, is_staff/superuser, display name)
    ("student", False, "Demo Student"),
    ("admin", True, "Demo Admin"),
]


class Command(BaseCommand):
    help = "Create demo accounts (student, admin) if absent and print their passwords once."

    def handle(self, *args: object, **options: object) -> None:
        User = get_user_model()
        for username, is_admin, full_name in DEMO_ACCOUNTS:
            if User.objects.filter(username=username).exists():
                continue
            password = secrets.token_urlsafe(9)
            first, last = full_name.split(" ", 1)
            if is_admin:
                User.objects.create_superuser(username=username, password=password, first_name=first, last_name=last)
            else:
                User.objects.create_user(username=username, password=password, first_name=first, last_name=last)
            self.stdout.write(
                f"  demo login created: {username} / {password}  "
                f"(shown once; to set another: .venv/bin/python manage.py changepassword {username})"
            )
