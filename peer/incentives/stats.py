"""What ``webseed stats`` and the stats endpoint show: identity, level, badges, counters."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .identity import KEY_FILE, load
from .ledger import Ledger
from .recognition import Recognition

LEDGER_FILE = "ledger.json"
RECOGNITION_FILE = "recognition.json"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/webseed`` (``~/.local/state/webseed`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or ""
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "webseed"


def report(state_dir: Path, now: float, identity_dir: Path | None = None) -> dict[str, Any]:
    """Seeding statistics from the state files in ``state_dir`` (read only; nothing is created)."""
    key = (identity_dir or state_dir) / KEY_FILE
    peer_id = load(key).peer_id if key.exists() else None
    ledger = Ledger(state_dir / LEDGER_FILE) if (state_dir / LEDGER_FILE).exists() else Ledger()
    recognition = Recognition(state_dir / RECOGNITION_FILE)
    return {
        "peer_id": peer_id,
        "state_dir": str(state_dir),
        "recognition": recognition.summary(),
        "ledger": ledger.summary(now),
    }


def render(data: dict[str, Any]) -> str:
    """Human-readable text of :func:`report`."""
    rec = data["recognition"]
    total = rec["total"]
    lines = [
        f"peer id:   {data['peer_id'] or '(no identity yet)'}",
        f"level:     {rec['level']}",
        f"badges:    {', '.join(rec['badges']) or '-'}",
        f"served:    {_size(total['served'])} over {total['seconds'] / 3600:.1f} h of seeding",
        f"downloaded {_size(total['downloaded'])}; peers known: {data['ledger']['peers']}",
    ]
    for name, row in rec["artifacts"].items():
        lines.append(
            f"  {name}: served {_size(row['served'])}, seeded {row['seconds'] / 3600:.1f} h"
        )
    return "\n".join(lines)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
