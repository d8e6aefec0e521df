"""The `webseed` command lines of examples/github-actions.yml and gitlab-ci.yml, run for real.

No CI runner exists here: the test takes every line of the two pipelines that
calls `webseed`, and runs it with bash exactly as written, with the key in the
environment (GitHub) or behind a file descriptor (GitLab), on top of a
previously published tree, as the pipelines do after fetching it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import write_random
from tests.ecosystem.conftest import keygen, publish_cli
from webseed.cli import app
from webseed.index.client import open_index_once
from webseed.integrity.keys import load_public_key

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def webseed_lines(name: str) -> list[str]:
    text = (EXAMPLES / name).read_text()
    lines = [
        re.sub(r"^\s*(?:- )?(?:run: )?", "", line)
        for line in text.splitlines()
        if re.match(r"^\s*(?:- )?(?:run: )?webseed ", line)
    ]
    assert [line.split()[1] for line in lines] == ["publish", "verify"], lines
    return lines


@pytest.mark.parametrize("pipeline", ["github-actions.yml", "gitlab-ci.yml"])
def test_pipeline_commands(tmp_path: Path, pipeline: str) -> None:
    key, pub = keygen(tmp_path / "k")
    work = tmp_path / "job"
    public = work / "public"
    write_random(public / "releases" / "v1.0" / "demo-1.0.tar.gz", 200_000, seed=1)
    publish_cli(public, public, key)  # the repository as the previous run left it
    write_random(public / "releases" / "v1.1" / "demo-1.1.tar.gz", 210_000, seed=2)
    (work / "mirrors.json").write_text(json.dumps([{"url": "https://cdn.example.org/r"}]))
    (work / "webseed.pub").write_bytes(pub.read_bytes())
    pem = key.read_bytes()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WEBSEED_")},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "WEBSEED_KEY": pem.decode(),
        "WEBSEED_KEY_B64": base64.b64encode(pem).decode(),
    }
    publish_line, verify_line = webseed_lines(pipeline)
    proc = subprocess.run(
        ["bash", "-e", "-c", publish_line],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{publish_line}\n{proc.stdout}{proc.stderr}"
    # The verify line needs no shell features: run in-process (a CLI start costs seconds here).
    argv = shlex.split(verify_line)[1:]
    res = CliRunner().invoke(
        app, [str(work / a) if a in ("public", "webseed.pub") else a for a in argv]
    )
    assert res.exit_code == 0, res.output
    index = open_index_once(str(public), load_public_key(pub))
    assert index.version == 2
    assert "releases/v1.1/demo-1.1.tar.gz" in index.paths()
    assert [m["url"] for m in index.mirrors] == ["https://cdn.example.org/r"]
    # A failing step fails the job: a wrong key is a non-zero exit with a message.
    env["WEBSEED_KEY"] = "not a key"
    env["WEBSEED_KEY_B64"] = base64.b64encode(b"not a key").decode()
    bad = subprocess.run(
        ["bash", "-e", "-c", publish_line],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "key" in bad.stderr.lower()
