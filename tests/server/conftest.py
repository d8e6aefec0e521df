from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.helpers import publish, rand
from webseed.server.app import create_app
from webseed.server.standalone import ServerOptions, ServerThread

SIZE = 3 * 1024 * 1024 + 12345


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    publish(root, "releases/big.bin", rand(SIZE))
    (root / "plain").mkdir()
    (root / "plain" / "unlisted.txt").write_bytes(b"hello, world\n" * 100)
    (root / "empty.bin").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[str]:
    app = create_app(repo)
    thread = ServerThread(app, ServerOptions(port=0, keep_alive_timeout=2.0))
    with thread as url:
        yield url
