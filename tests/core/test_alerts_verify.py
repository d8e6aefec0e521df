from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.conftest import write_random
from webseed.integrity.alerts import AlertSink, TamperAlert
from webseed.integrity.verify import verify_file
from webseed.manifest import build_manifest


def test_alert_sink_fans_out() -> None:
    stream = io.StringIO()
    sink = AlertSink(stream)
    got: list[TamperAlert] = []
    sink.subscribe(got.append)
    alert = TamperAlert(
        "chunk-digest", "a", "bad", chunk=3, source="http://p", expected="1", actual="2"
    )
    sink.emit(alert)
    assert got == [alert] and sink.alerts == [alert]
    line = json.loads(stream.getvalue())
    assert line["chunk"] == 3 and line["source"] == "http://p" and line["kind"] == "chunk-digest"
    AlertSink().emit(alert)
    with pytest.raises(ValueError):
        TamperAlert("nonsense", "a", "b")


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[Path, object]:
    f = write_random(tmp_path / "a.bin", 600_000)
    return f, build_manifest(f, "a.bin")


def test_verify_ok_and_all_digests(artifact: tuple[Path, object]) -> None:
    f, m = artifact
    result = verify_file(f, m)  # type: ignore[arg-type]
    assert result.ok and result.checked_digests == ["sha256"]
    result = verify_file(f, m, all_digests=True)  # type: ignore[arg-type]
    assert result.ok and result.checked_digests == ["blake2b", "sha256", "sha3-256"]


def test_verify_one_byte_changed(artifact: tuple[Path, object]) -> None:
    f, m = artifact
    data = bytearray(f.read_bytes())
    data[300_000] ^= 1
    f.write_bytes(bytes(data))
    sink = AlertSink()
    result = verify_file(f, m, sink=sink, source="mirror-a", all_digests=True)  # type: ignore[arg-type]
    assert not result.ok
    assert result.bad_chunks == [1]
    kinds = [a.kind for a in sink.alerts]
    assert kinds.count("chunk-digest") == 1 and kinds.count("file-digest") == 3
    assert all(a.source == "mirror-a" for a in sink.alerts)


def test_verify_size_and_missing(artifact: tuple[Path, object], tmp_path: Path) -> None:
    f, m = artifact
    with open(f, "ab") as fh:
        fh.write(b"x")
    result = verify_file(f, m)  # type: ignore[arg-type]
    assert not result.ok and result.alerts[0].kind == "size"
    result = verify_file(tmp_path / "nope", m)  # type: ignore[arg-type]
    assert not result.ok and result.alerts[0].kind == "missing"
