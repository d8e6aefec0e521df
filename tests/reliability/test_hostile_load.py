"""Hostile clients at scale against a real `webseed serve` process.

tests/server/test_hostile.py covers one slow-loris, one unread answer, oversized
heads and range abuse against an in-process server; here 200 slow-loris
connections and oversized bodies hit the standalone server process while honest
clients keep being served.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import httpx

from bench import load
from bench._util import _hwm


def test_200_slow_loris_and_huge_bodies(tmp_path: Path) -> None:
    repo = load.make_repo(tmp_path)
    proc, base = load.start_webseed(repo)
    host, port = base.removeprefix("http://").split(":")
    lorises: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(200):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /" + load.PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n")
            lorises.append(s)

        def drip() -> None:  # one more header line per connection every 0.5 s, never the end
            n = 0
            while not stop.wait(0.5) and n < 20:
                n += 1
                for s in lorises:
                    with contextlib.suppress(OSError):
                        s.sendall(b"X-Slow-%d: 1\r\n" % n)

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        # Oversized bodies: a 10 GB upload announced, 1 MiB sent; answered without reading it all.
        with socket.create_connection((host, int(port)), timeout=10) as big:
            big.sendall(
                b"PUT /" + load.PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 10000000000\r\n\r\n"
            )
            start = time.monotonic()
            try:
                for _ in range(16):
                    big.sendall(b"\0" * 65536)
            except OSError:
                pass
            answer = big.recv(200)
            assert answer.startswith(b"HTTP/1.1 405") or answer == b"", answer
            assert time.monotonic() - start < 5
        # Honest clients are served promptly all along.
        worst = 0.0
        with httpx.Client(timeout=10) as c:
            for _ in range(20):
                t0 = time.monotonic()
                r = c.get(f"{base}/{load.PATH}", headers={"Range": "bytes=0-65535"})
                worst = max(worst, time.monotonic() - t0)
                assert r.status_code == 206 and len(r.content) == 65536
                time.sleep(0.1)
        assert worst < 2.0, worst
        assert proc.poll() is None
        assert _hwm(proc.pid) < 256 * 2**20  # 200 hostile connections do not blow up memory
    finally:
        stop.set()
        for s in lorises:
            s.close()
        load.stop(proc)
