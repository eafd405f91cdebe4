"""Where the read-only shared inputs live: Pigsty's example inventories and sources.

They sit beside the checkout (`../shared`), as on the development machines and in CI; `STY_SHARED` points
elsewhere. Tests read them in place: the project carries no copies of others' files.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _shared() -> Path:
    candidates = [Path(os.environ["STY_SHARED"])] if os.environ.get("STY_SHARED") else []
    candidates += [parent / "shared" for parent in ROOT.parents] + [Path("/work/shared")]
    for candidate in candidates:
        if (candidate / "pigsty-conf").is_dir():
            return candidate
    return ROOT.parent / "shared"


SHARED = _shared()
CORPUS = SHARED / "pigsty-conf"  # Pigsty v4.5's example inventories: real inputs sty must compile
PIGSTY_SRC = SHARED / "pigsty-src"  # Pigsty v4.5's roles: the behaviour to match
