"""The real nginx as a plain static mirror (ranges, sendfile) for tests, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def nginx_binary() -> str | None:
    """Path of nginx, or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None


class Nginx:
    """The real nginx serving ``root`` as a plain mirror on 127.0.0.1 (tests that need it mark it with ``needs``)."""

    def __init__(
        self,
        root: Path | None = None,
        limit_rate: str | None = None,
        *,
        http: str = "",
        server: str = "",
    ) -> None:
        self.root = root
        self.limit_rate = limit_rate  # nginx's per-connection rate limit, e.g. "2m"
        # Extra directives for the http block ({dir} is the server's own directory)
        # and for the server block (a caching proxy's location, say).
        self.http = http
        self.server = server
        self.binary = nginx_binary()
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="ws-nginx-")

    def __enter__(self) -> Nginx:
        assert self.binary
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = Path(self._dir) / "nginx.conf"
        limit = f"limit_rate {self.limit_rate};" if self.limit_rate else ""
        root = f"root {self.root};" if self.root is not None else ""
        conf.write_text(
            f"""
{"user root;" if os.geteuid() == 0 else ""}
daemon off; worker_processes 1; pid {self._dir}/nginx.pid; error_log {self._dir}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off; sendfile on; keepalive_requests 10000;
  client_body_temp_path {self._dir}; proxy_temp_path {self._dir};
  fastcgi_temp_path {self._dir}; uwsgi_temp_path {self._dir}; scgi_temp_path {self._dir};
  {self.http.format(dir=self._dir)}
  server {{ listen 127.0.0.1:{self.port}; {root} {limit} {self.server} }}
}}
"""
        )
        self.proc = subprocess.Popen([self.binary, "-c", str(conf), "-p", self._dir])
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return self
            time.sleep(0.02)
        raise RuntimeError("nginx did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
        shutil.rmtree(self._dir, ignore_errors=True)
