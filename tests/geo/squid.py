"""Debian's squid, started by a test on loopback with its own config, stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONFIG = """\
http_port 127.0.0.1:{port}
acl localnet src 127.0.0.0/8
http_access allow localnet
http_access deny all
cache deny all
cache_mem 8 MB
pid_filename {dir}/squid.pid
access_log {dir}/access.log
cache_log {dir}/cache.log
cache_store_log none
coredump_dir {dir}
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
visible_hostname webseed-test-proxy
forwarded_for delete
"""


def squid_binary() -> str | None:
    return shutil.which("squid") or (
        "/usr/sbin/squid" if os.access("/usr/sbin/squid", os.X_OK) else None
    )


class Squid:
    """A foreground squid (``-N``) on an ephemeral loopback port."""

    def __init__(self) -> None:
        binary = squid_binary()
        if binary is None:
            raise FileNotFoundError("squid is not installed")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        # squid drops to its own user for its logs: a directory directly in /tmp,
        # because pytest's tmp_path has 0700 parents that user cannot traverse.
        workdir = Path(tempfile.mkdtemp(prefix="webseed-squid-"))
        workdir.chmod(0o777)
        self.workdir = workdir
        conf = workdir / "squid.conf"
        conf.write_text(CONFIG.format(port=self.port, dir=workdir))
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "-N", "-f", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"squid exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"squid did not listen within 20 s: {self.log()}")

    def log(self) -> str:
        path = self.workdir / "cache.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)
