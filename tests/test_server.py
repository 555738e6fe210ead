"""The server as bin/serve starts it (project/serve.py, issue 17 finding 5): Twisted no longer parses
form and multipart bodies into memory (twisted#4519, twisted#5511), and a body over its cap gets 413
before it is read, by Content-Length or, when chunked, as it arrives. Real Daphne, raw sockets, RSS
from /proc."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.fixtures_daphne import Daphne

MIB = 1024 * 1024
BOUNDARY = b"sandpitboundary"
CSRF_TOKEN = b"k" * 32
BIN_SERVE = Path(__file__).resolve().parent.parent / "bin" / "serve"


def _status_kib(pid: int, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, field
    return int(match.group(1))


def _reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def _exchange(port: int, head: bytes, body: Iterator[bytes] = iter(()), until_closed: bool = False) -> bytes:
    """Send a request (the body in pieces; the server may stop reading) and return the response:
    all of it with `until_closed`, else up to the end of an app's headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(head)
            for piece in body:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-body: the 413 came first
        response = b""
        try:
            while chunk := sock.recv(65536):
                response += chunk
                if not until_closed and b"\r\n\r\n" in response and b"413" not in response.split(b"\r\n", 1)[0]:
                    break  # an answer from Django: the status line and headers are enough
        except (ConnectionResetError, TimeoutError):
            pass
        return response


def _multipart(size_bytes: int) -> tuple[bytes, Callable[[], Iterator[bytes]]]:
    """(the parts' Content-Type, a generator of a multipart body of exactly `size_bytes`)."""
    opening = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="username"; filename="a.bin"\r\n\r\n'
    closing = b"\r\n--" + BOUNDARY + b"--\r\n"
    filler = size_bytes - len(opening) - len(closing)

    def pieces() -> Iterator[bytes]:
        yield opening
        block = b"x" * MIB
        left = filler
        while left > 0:
            yield block[: min(left, MIB)]
            left -= MIB
        yield closing

    return b"multipart/form-data; boundary=" + BOUNDARY, pieces


def _post_head(port: int, path: str, length: int | None, content_type: bytes, extra: bytes = b"") -> bytes:
    framing = b"Transfer-Encoding: chunked\r\n" if length is None else b"Content-Length: %d\r\n" % length
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: %s\r\n%s%s\r\n"
            % (path.encode(), port, content_type, framing, extra))


def _status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


@pytest.fixture
def server(daphnes: Callable[..., Daphne]) -> Daphne:
    daphne = daphnes()
    _exchange(daphne.port, b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    return daphne


def test_the_tests_start_the_server_the_way_bin_serve_does(server: Daphne) -> None:
    exec_line = next(line for line in BIN_SERVE.read_text().splitlines() if line.startswith("exec "))
    assert "-m project.serve" in exec_line and "--websocket-max-message-size 1048576" in exec_line
    cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1:3] == [b"-m", b"project.serve"] and b"1048576" in cmdline


def test_a_100_mib_anonymous_multipart_post_costs_the_server_little_memory(server: Daphne) -> None:
    size = 100 * MIB
    content_type, pieces = _multipart(size)
    pid = server.proc.pid
    rss_before_kib = _status_kib(pid, "VmRSS")
    _reset_peak_rss(pid)
    started = time.monotonic()
    response = _exchange(server.port, _post_head(server.port, "/accounts/login/", size, content_type), pieces())
    elapsed_s = time.monotonic() - started
    time.sleep(0.5)
    growth_mib = (_status_kib(pid, "VmHWM") - rss_before_kib) / 1024
    print(f"100 MiB anonymous multipart POST: peak RSS growth {growth_mib:.1f} MiB, answered in {elapsed_s:.2f} s")
    assert growth_mib < 100, f"the server grew by {growth_mib:.0f} MiB"
    if response:  # the 413 may be lost to the reset of a connection closed with the body unread
        assert _status(response) == 413 and b"limit is %d bytes" % settings.HTTP_ANONYMOUS_BODY_MAX_BYTES in response
    # Everyone else is still served.
    health = _exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert _status(health) in (200, 503)


def test_a_body_within_the_cap_is_not_parsed_into_memory_by_twisted(server: Daphne) -> None:
    """With a session cookie the cap is the largest upload; such a body reaches Django a chunk at a
    time, which streams it to disk: the server grows by a fraction of it (Twisted's parsing cost
    11-12 times it, and Daphne queued it whole: once again its size)."""
    size = 30 * MIB
    assert size < settings.HTTP_BODY_MAX_BYTES
    content_type, pieces = _multipart(size)
    pid = server.proc.pid
    rss_before_kib = _status_kib(pid, "VmRSS")
    _reset_peak_rss(pid)
    head = _post_head(server.port, "/accounts/login/", size, content_type, b"Cookie: sessionid=not-a-session\r\n")
    response = _exchange(server.port, head, pieces())
    growth_mib = (_status_kib(pid, "VmHWM") - rss_before_kib) / 1024
    print(f"30 MiB multipart POST with a cookie: peak RSS growth {growth_mib:.1f} MiB")
    assert _status(response) == 403  # Django's CSRF refusal: the request reached the app
    assert growth_mib < size / MIB / 3, f"the server grew by {growth_mib:.0f} MiB"


@pytest.mark.parametrize("credential", [b"", b"Cookie: sessionid=abc\r\n", b"X-API-Key: e2b_123\r\n", b"X-Access-Token: t\r\n"])
def test_a_content_length_over_the_cap_is_refused_before_the_body_is_sent(server: Daphne, credential: bytes) -> None:
    cap = settings.HTTP_BODY_MAX_BYTES if credential else settings.HTTP_ANONYMOUS_BODY_MAX_BYTES
    head = _post_head(server.port, "/accounts/login/", cap + 1, b"application/x-www-form-urlencoded",
                      credential + b"Expect: 100-continue\r\n")
    response = _exchange(server.port, head)  # no body at all: the answer must not wait for it
    assert _status(response) == 413
    assert b"100 Continue" not in response and b"limit is %d bytes" % cap in response
    # At the cap, the request is read and answered by the app.
    at_cap = _post_head(server.port, "/accounts/login/", cap, b"application/x-www-form-urlencoded", credential)
    assert _status(_exchange(server.port, at_cap, _filler(cap))) == 403  # Django's CSRF refusal


def _filler(size_bytes: int) -> Iterator[bytes]:
    block = b"a" * MIB
    for start in range(0, size_bytes, MIB):
        yield block[: min(MIB, size_bytes - start)]


def _chunked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


def test_a_chunked_anonymous_body_is_counted_as_it_arrives(server: Daphne) -> None:
    cap = settings.HTTP_ANONYMOUS_BODY_MAX_BYTES
    head = _post_head(server.port, "/accounts/login/", None, b"application/x-www-form-urlencoded")
    big = _exchange(server.port, head, _chunked(iter([b"a" * 16384] * (cap // 16384 + 64))))
    assert _status(big) == 413
    small = _exchange(server.port, head, _chunked(iter([b"username=a&", b"password=b"])))
    assert _status(small) == 403  # reached Django (no CSRF token)


def test_an_upload_reaches_the_workspace_byte_for_byte(server: Daphne, alice, alice_session) -> None:
    """The body reaches Django a chunk at a time from Twisted's file, complete and in order."""
    from tests.fixtures_runs import _cookie_for

    data = os.urandom(3 * MIB + 12345)
    opening = (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="blob.bin"\r\n'
               b"Content-Type: application/octet-stream\r\n\r\n")
    body = opening + data + b"\r\n--" + BOUNDARY + b"--\r\n"
    cookie = _cookie_for(alice) + b"; csrftoken=" + CSRF_TOKEN
    head = _post_head(server.port, f"/sessions/{alice_session.id}/files/", len(body), b"multipart/form-data; boundary=" + BOUNDARY,
                      b"Cookie: " + cookie + b"\r\nX-CSRFToken: " + CSRF_TOKEN + b"\r\nConnection: close\r\n")
    response = _exchange(server.port, head, iter([body[i:i + 100_000] for i in range(0, len(body), 100_000)]))
    assert _status(response) == 201, response[:500]
    download = _exchange(server.port, b"GET /sessions/%s/files/download?path=blob.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Cookie: %s\r\nConnection: close\r\n\r\n" % (str(alice_session.id).encode(), cookie), until_closed=True)
    assert _status(download) == 200
    assert download.split(b"\r\n\r\n", 1)[1] == data
