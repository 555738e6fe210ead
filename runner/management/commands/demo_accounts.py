"""Create the demo accounts if they are absent, and print their logins once, when created.

The demo: a teacher, two students in one classroom ("Demo class"), and the admin.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User as AuthUser
from django.core.management.base import BaseCommand

from runner import services
from runner.models import Classroom

DEMO_ACCOUNTS = [
    # (username, is_staff/superuser, display name)
    ("teacher", False, "Demo Teacher"),
    ("student", False, "Demo Student"),
    ("student2", False, "Second Student"),
    ("admin", True, "Demo Admin"),
]
DEMO_CLASS = "Demo class"
DEMO_CLASS_TEACHER = "teacher"
DEMO_CLASS_STUDENTS = ("student", "student2")


class Command(BaseCommand):
    help = "Create demo accounts (teacher, two students in 'Demo class', admin) if absent and print their passwords once."

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
        self._demo_class(User)

    def _demo_class(self, User: type[AuthUser]) -> None:
        teacher = User.objects.get(username=DEMO_CLASS_TEACHER)
        classroom = Classroom.objects.filter(name=DEMO_CLASS, teachers=teacher).first()
        if classroom is None:
            classroom = services.classroom_create(teacher=teacher, name=DEMO_CLASS)
            self.stdout.write(f"  demo classroom created: {DEMO_CLASS} (teacher: {DEMO_CLASS_TEACHER}; join code {classroom.join_code})")
        classroom.students.add(*User.objects.filter(username__in=DEMO_CLASS_STUDENTS))
