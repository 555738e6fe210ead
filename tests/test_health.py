"""/healthz: 200 when code can run, 503 with the reason in degraded mode."""

from __future__ import annotations

import pytest
from django.test import override_settings


@pytest.mark.django_db
def test_healthz_names_the_backend_and_whether_code_can_run(client) -> None:
    response = client.get("/healthz")
    body = response.json()
    assert set(body) == {"ok", "backend", "detail"}
    assert body["backend"] in {"local", "e2b", "none"}
    assert response.status_code == (200 if body["ok"] else 503)


@pytest.mark.django_db
def test_healthz_is_503_with_the_reason_when_the_backend_is_unknown(client) -> None:
    with override_settings(SANDBOX_BACKEND="nonsense"):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body == {"ok": False, "backend": "none", "detail": body["detail"]}
    assert "nonsense" in body["detail"]
