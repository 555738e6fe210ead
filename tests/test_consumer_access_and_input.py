"""Who may connect, and what malformed input gets: an `error` frame, the socket stays open, and
nobody else notices.

alice owns `alice_session`; bob is another student; `admin_user` is a superuser (read-only viewer).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.test import override_settings

from runner.models import Execution
from tests.fixtures_runs import _cookie_for, receive

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def _assert_still_open(ws) -> None:
    await ws.send_json_to({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


async def test_another_users_session_is_closed_with_4403(connect, bob, alice_session) -> None:
    ws = await connect(bob, alice_session)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}


async def test_an_anonymous_socket_is_closed_with_4403(connect, alice_session) -> None:
    ws = await connect(None, alice_session)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}


async def test_an_unknown_session_is_closed_with_4404(connect, alice) -> None:
    ws = await connect(alice, uuid.uuid4())
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4404}


async def test_a_foreign_origin_is_refused_at_the_handshake(alice_session, alice, runs_cleanup) -> None:
    from channels.testing import WebsocketCommunicator

    from project.asgi import application

    ws = WebsocketCommunicator(application, f"/ws/sessions/{alice_session.id}/", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await ws.connect(timeout=5)
    assert connected is False
    await ws.disconnect()


async def _handshake(session_id: object, cookie: bytes, origin: bytes, host: bytes, *extra: tuple[bytes, bytes]) -> bool:
    """Whether a socket with these headers is accepted (its hello read when it is)."""
    from channels.testing import WebsocketCommunicator

    from project.asgi import application

    headers = [(b"origin", origin), (b"host", host), (b"cookie", cookie), *extra]
    ws = WebsocketCommunicator(application, f"/ws/sessions/{session_id}/", headers=headers)
    connected, _ = await ws.connect(timeout=10)
    if connected:
        assert (await receive(ws))["type"] == "hello"
    await ws.disconnect()
    return connected


@pytest.mark.parametrize(("origin", "accepted"), [
    (b"http://127.0.0.1:8000", True),
    (b"http://127.0.0.1:9999", False),  # another port of this host: another origin
    (b"https://127.0.0.1:8000", False),  # another scheme
    (b"http://127.0.0.1", False),  # port 80
    (b"http://localhost:8000", False),  # an allowed host, but not the one the page was served from
    (b"null", False),
    (b"http://127.0.0.1:8000@evil.example", False),
])
async def test_the_origin_must_be_the_sites_own_scheme_host_and_port(alice, alice_session, runs_cleanup, origin: bytes, accepted: bool) -> None:
    cookie = await asyncio.to_thread(_cookie_for, alice)
    assert await _handshake(alice_session.id, cookie, origin, b"127.0.0.1:8000") is accepted


async def test_no_origin_or_a_host_outside_allowed_hosts_is_refused(alice, alice_session, runs_cleanup) -> None:
    from channels.testing import WebsocketCommunicator

    from project.asgi import application

    cookie = await asyncio.to_thread(_cookie_for, alice)
    ws = WebsocketCommunicator(application, f"/ws/sessions/{alice_session.id}/", headers=[(b"host", b"127.0.0.1"), (b"cookie", cookie)])
    assert (await ws.connect(timeout=10))[0] is False
    await ws.disconnect()
    # A rebound DNS name: Origin and Host agree, but the host is not ours.
    assert await _handshake(alice_session.id, cookie, b"http://evil.example", b"evil.example") is False


async def test_behind_the_tls_proxy_the_origin_is_https_and_trusted_origins_count(alice, alice_session, runs_cleanup) -> None:
    cookie = await asyncio.to_thread(_cookie_for, alice)
    proto = (b"x-forwarded-proto", b"https")
    with override_settings(ALLOWED_HOSTS=["sandpit.example.org"], SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
                           CSRF_TRUSTED_ORIGINS=["https://*.school.example"]):
        assert await _handshake(alice_session.id, cookie, b"https://sandpit.example.org", b"sandpit.example.org", proto) is True
        assert await _handshake(alice_session.id, cookie, b"http://sandpit.example.org", b"sandpit.example.org", proto) is False
        # Without the proxy's header the site is plain http, so an https page is another origin.
        assert await _handshake(alice_session.id, cookie, b"https://sandpit.example.org", b"sandpit.example.org") is False
        assert await _handshake(alice_session.id, cookie, b"https://teach.school.example", b"sandpit.example.org", proto) is True
        assert await _handshake(alice_session.id, cookie, b"http://teach.school.example", b"sandpit.example.org", proto) is False
        assert await _handshake(alice_session.id, cookie, b"https://school.example.evil", b"sandpit.example.org", proto) is False


async def test_a_viewer_sees_the_session_but_may_not_run(connect, admin_user, alice_session) -> None:
    ws = await connect(admin_user, alice_session)
    hello = await receive(ws)
    assert hello["can_run"] is False
    await ws.send_json_to({"type": "run", "code": "print(1)", "language": "python", "client_id": "x"})
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == "forbidden"
    assert await Execution.objects.acount() == 0
    await _assert_still_open(ws)


async def test_ping_gets_pong(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await _assert_still_open(ws)
    assert await ws.receive_nothing()


BAD_FRAMES = {
    "not_json": ("text", "{not json"),
    "json_array": ("text", "[1, 2]"),
    "json_string": ("text", '"run"'),
    "no_type": ("json", {"code": "print(1)"}),
    "type_not_a_string": ("json", {"type": 7}),
    "unknown_type": ("json", {"type": "launch"}),
    "code_not_a_string": ("json", {"type": "run", "code": ["print(1)"], "language": "python", "client_id": "a"}),
    "code_missing": ("json", {"type": "run", "language": "python", "client_id": "a"}),
    "code_empty": ("json", {"type": "run", "code": "   ", "language": "python", "client_id": "a"}),
    "language_unknown": ("json", {"type": "run", "code": "1", "language": "cobol", "client_id": "a"}),
    # R is the E2B API's only: the page has no picker, rendering or export for it.
    "language_r_is_api_only": ("json", {"type": "run", "code": "1", "language": "r", "client_id": "a"}),
    "language_not_a_string": ("json", {"type": "run", "code": "1", "language": None, "client_id": "a"}),
    "client_id_not_a_string": ("json", {"type": "run", "code": "1", "language": "python", "client_id": 5}),
    "code_too_large": ("json", {"type": "run", "code": "#" * (100 * 1024 + 1), "language": "python", "client_id": "a"}),
    "stop_id_not_an_integer": ("json", {"type": "stop", "execution_id": "1"}),
    "stop_id_boolean": ("json", {"type": "stop", "execution_id": True}),
    "input_reply_id_not_an_integer": ("json", {"type": "input_reply", "execution_id": "1", "value": "x"}),
    "input_reply_value_not_a_string": ("json", {"type": "input_reply", "execution_id": 1, "value": 5}),
    "input_reply_value_too_long": ("json", {"type": "input_reply", "execution_id": 1, "value": "x" * 10_001}),
}


@pytest.mark.parametrize("how,payload", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_malformed_input_gets_a_bad_request_error_and_the_socket_stays_open(connect, alice, alice_session, how, payload) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    if how == "text":
        await ws.send_to(text_data=payload)
    else:
        await ws.send_json_to(payload)
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == "bad_request" and error["message"], error
    await _assert_still_open(ws)
    assert await Execution.objects.acount() == 0


async def test_a_binary_frame_gets_a_bad_request_error(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await ws.send_to(bytes_data=b"\x00\x01")
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == "bad_request"
    await _assert_still_open(ws)


async def test_stopping_a_run_of_another_session_is_not_found(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await ws.send_json_to({"type": "stop", "execution_id": 999999})
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == "not_found"
    await _assert_still_open(ws)


async def test_an_input_reply_nobody_waits_for_is_not_found_and_a_viewer_may_not_send_one(connect, alice, admin_user, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await ws.send_json_to({"type": "input_reply", "execution_id": 999999, "value": "x"})
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == "not_found"
    await _assert_still_open(ws)
    viewer = await connect(admin_user, alice_session)
    await receive(viewer)
    await viewer.send_json_to({"type": "input_reply", "execution_id": 1, "value": "x"})
    assert (await receive(viewer))["code"] == "forbidden"


async def test_bad_after_parameters_get_an_error_after_hello(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session, "after_execution=abc&after_index=0")
    assert (await receive(ws))["type"] == "hello"
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == "bad_request"
    await _assert_still_open(ws)


async def test_a_flood_of_frames_is_rate_limited_once_and_the_socket_stays_open(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    with override_settings(WS_MESSAGES_PER_10S=5):
        ws2 = await connect(alice, alice_session)
        await receive(ws2)
        for _ in range(8):
            await ws2.send_json_to({"type": "ping"})
        frames = [await receive(ws2) for _ in range(6)]
        assert await ws2.receive_nothing()  # inside: the limit is read per frame
    assert frames == [{"type": "pong"}] * 5 + [frames[5]]
    assert frames[5]["type"] == "error" and frames[5]["code"] == "rate_limited"


async def test_the_rate_limit_is_per_user_across_sockets(connect, alice, bob, alice_session, bob_session) -> None:
    with override_settings(WS_MESSAGES_PER_10S=4):
        first, second = await connect(alice, alice_session), await connect(alice, alice_session)
        bystander = await connect(bob, bob_session)
        for ws in (first, second, bystander):
            await receive(ws)
        for ws in (first, first, second, second):
            await ws.send_json_to({"type": "ping"})
            assert await receive(ws) == {"type": "pong"}
        await second.send_json_to({"type": "ping"})  # alice's fifth frame, on either socket
        error = await receive(second)
        assert error["code"] == "rate_limited" and "at most 4 per 10 seconds" in error["message"]
        await first.send_json_to({"type": "ping"})
        assert (await receive(first))["code"] == "rate_limited"  # each socket is told once
        await bystander.send_json_to({"type": "ping"})
        assert await receive(bystander) == {"type": "pong"}  # bob has his own allowance
        assert await first.receive_nothing() and await second.receive_nothing()


async def test_another_users_socket_notices_nothing_of_a_bad_client(connect, alice, bob, alice_session, bob_session) -> None:
    bystander = await connect(bob, bob_session)
    await receive(bystander)
    ws = await connect(alice, alice_session)
    await receive(ws)
    for payload in ("{oops", "[]", '{"type": "nope"}'):
        await ws.send_to(text_data=payload)
        assert (await receive(ws))["type"] == "error"
    await ws.send_to(bytes_data=b"\xff")
    assert (await receive(ws))["type"] == "error"
    assert await bystander.receive_nothing()
    await _assert_still_open(bystander)


async def _credentials_change(user, how: str) -> None:
    if how == "deactivated":
        user.is_active = False
    else:
        user.set_password("a new password")
    await user.asave()


@pytest.mark.parametrize(("who", "how"), [("owner", "deactivated"), ("owner", "password"), ("viewer", "deactivated")])
async def test_a_socket_open_before_deactivation_or_a_password_change_is_closed_with_4401(
    connect, alice, admin_user, alice_session, who, how
) -> None:
    from channels.testing import WebsocketCommunicator

    from project.asgi import application
    from tests.fixtures_runs import HOST, ORIGIN, _cookie_for

    # Alice owns the session; the admin views it. One of them loses their credentials.
    changed, other = (alice, admin_user) if who == "owner" else (admin_user, alice)
    old_cookie = await asyncio.to_thread(_cookie_for, changed)
    gone = await connect(changed, alice_session)
    stays = await connect(other, alice_session)
    for ws in (gone, stays):
        assert (await receive(ws))["type"] == "hello"
    await _credentials_change(changed, how)
    assert await gone.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await _assert_still_open(stays)  # the other user notices nothing
    # A session logged in with the old credentials opens no new socket either.
    again = WebsocketCommunicator(application, f"/ws/sessions/{alice_session.id}/", headers=[(b"origin", ORIGIN), (b"host", HOST), (b"cookie", old_cookie)])
    try:
        assert (await again.connect(timeout=5))[0] is True
        assert await again.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    finally:
        await again.disconnect()


async def test_a_login_does_not_close_the_users_sockets(connect, alice, alice_session) -> None:
    from django.utils import timezone

    ws = await connect(alice, alice_session)
    assert (await receive(ws))["type"] == "hello"
    alice.last_login = timezone.now()
    await alice.asave(update_fields=["last_login"])
    alice.first_name = "Alice"
    await alice.asave()
    await _assert_still_open(ws)
