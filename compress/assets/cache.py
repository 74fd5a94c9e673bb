"""Where built assets live: ``$RELATION_COMPRESS_CACHE`` or ``~/.cache/relation-compress``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root (not created here; builders create what they write)."""
    return Path(os.environ.get("RELATION_COMPRESS_CACHE") or Path.home() / ".cache" / "relation-compress")
