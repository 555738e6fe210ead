"""The request type of views behind `login_required`."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest


class AuthenticatedRequest(HttpRequest):
    """A request that passed `login_required`: its user is a logged-in `User`, never anonymous."""

    user: User
