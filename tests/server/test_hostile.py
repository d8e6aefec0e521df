"""Hostile input against real Hypercorn: the right status, quickly, and the server keeps serving."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import SIZE
from tests.server.helpers import rand, raw_request, status_of

DATA = rand(SIZE)


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode()


def still_serving(server: str) -> None:
    r = httpx.get(f"{server}/releases/big.bin", headers={"Range": "bytes=5-14"}, timeout=5)
    assert r.status_code == 206 and r.content == DATA[5:15]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/../../etc/passwd", 400),
        ("/releases/../../etc/passwd", 400),
        ("/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/%2E%2E%2Fetc%2Fpasswd", 400),
        ("/releases/%2e%2e/%2e%2e/etc/passwd", 400),
        ("//etc/passwd", 400),
        ("/releases//big.bin", 400),
        ("/./releases/big.bin", 400),
        ("/releases/big.bin%00.txt", 400),
        ("/releases\\big.bin", 400),
        ("/.git/config", 404),
        ("/.well-known/webseed/metadata/%2e%2e%2f%2e%2e%2fplain%2funlisted.txt", 404),
        ("/escape/passwd", 404),  # a symlink leaving the repository
        ("/escape-dir/x", 404),
    ],
)
def test_hostile_paths(server: str, repo: Path, path: str, status: int) -> None:
    if not (repo / "escape").exists():
        os.symlink("/etc", repo / "escape")
        os.symlink("/tmp", repo / "escape-dir")
    start = time.perf_counter()
    answer = raw_request(server, get(path))
    assert status_of(answer) == status, answer[:200]
    assert b"root:" not in answer
    assert time.perf_counter() - start < 2
    still_serving(server)


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(5000)), 416),  # CVE-2011-3192: 5000 ranges
        ("bytes=0-," + ",".join("5-0" for _ in range(1300)), 416),  # the Apache killer
        ("bytes=" + ",".join(f"0-{i}" for i in range(16)), 416),  # a pile of overlaps
        ("bytes=-9223372036854775808", 206),  # CVE-2017-7529 style suffix: clamped
        ("bytes=-99999999999999999999999999", 416),  # too many digits
        ("bytes=0-18446744073709551616", 206),  # past 2^64: clamped
        ("bytes=18446744073709551615-", 416),
        ("bytes=4-3", 416),
        ("bytes=x-y", 416),
        ("bytes 0-1", 416),
        ("pages=0-1", 200),  # unknown unit: ignored, the whole file
    ],
)
def test_hostile_ranges(server: str, header: str, status: int) -> None:
    start = time.perf_counter()
    with httpx.Client(timeout=10) as c:
        r = c.get(f"{server}/releases/big.bin", headers={"Range": header})
    assert r.status_code == status, r.text[:200]
    if status == 416:
        assert r.headers["content-range"] == f"bytes */{SIZE}"
    if status == 206:
        assert r.content == DATA
    assert time.perf_counter() - start < 3
    still_serving(server)


def test_huge_header_what_hypercorn_really_does(server: str) -> None:
    """h11 caps an incomplete request head at 16 KiB, but it parses whatever it already
    received in one socket read (up to 64 KiB) first. So a 40 KiB head that arrives in one
    piece is parsed (and our own 1 KiB Range cap answers 416); a head that grows past
    16 KiB across reads is cut off with 400/431 or a closed connection."""
    big_range = "bytes=" + "0-0," * 10000 + "0-0"  # 40 KiB in one header
    answer = raw_request(server, get("/releases/big.bin", f"Range: {big_range}\r\n"))
    assert answer == b"" or status_of(answer) in (416, 431)
    # A head that trickles in: more than 16 KiB before the blank line.
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /releases/big.bin HTTP/1.1\r\nHost: x\r\n")
        got = b""
        try:
            for _ in range(200):  # up to 200 KiB of headers, 1 KiB at a time
                s.sendall(b"X-Pad: " + b"a" * 1015 + b"\r\n")
                time.sleep(0.001)
            s.sendall(b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            got = s.recv(4096)
        except (ConnectionResetError, TimeoutError):
            got = b""
    assert got == b"" or status_of(got) == 431, got[:100]
    still_serving(server)


def test_many_hostile_requests_do_not_stop_others(server: str) -> None:
    bad = get(
        "/releases/big.bin", "Range: bytes=" + ",".join(f"{i}-{i}" for i in range(400)) + "\r\n"
    )
    errors: list[BaseException] = []

    def attacker() -> None:
        try:
            for _ in range(30):
                assert status_of(raw_request(server, bad)) == 416
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attacker) for _ in range(4)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    for _ in range(10):
        still_serving(server)
    for t in threads:
        t.join(30)
    assert not errors
    assert time.perf_counter() - start < 20


def test_slow_clients_do_not_block_others(server: str) -> None:
    """Slowloris (a head that never ends) and a reader that never reads: others are served."""
    host, port = server.removeprefix("http://").split(":")
    loris = socket.create_connection((host, int(port)), timeout=10)
    loris.sendall(b"GET /releases/big.bin HTTP/1.1\r\nHost: x\r\n")
    sleeper = socket.create_connection((host, int(port)), timeout=10)
    sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sleeper.sendall(get("/releases/big.bin"))  # 3 MiB answer that nobody reads
    try:
        for _ in range(5):
            still_serving(server)
        # The server drops the idle half-request after its keep-alive timeout (2 s here).
        deadline = time.monotonic() + 8
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                loris.settimeout(1)
                closed = loris.recv(1024) == b""
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed = True
        assert closed, "slowloris connection was never closed"
    finally:
        loris.close()
        sleeper.close()
    still_serving(server)


def test_nul_and_bad_utf8(server: str) -> None:
    assert status_of(raw_request(server, get("/a%00b"))) == 400
    answer = raw_request(server, get("/%ff%fe"))
    assert status_of(answer) in (400, 404)
    still_serving(server)
