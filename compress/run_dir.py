"""The run directory: one folder per run, described by ``manifest.json`` and ``config.yaml``.

Every file that a later stage trusts is written atomically (a temporary file beside it, then
``os.replace``), so a killed process never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from compress.errors import UserError

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
LOCK = ".lock"
# The ONNX variants an export folder may hold (export/<variant>/, or export/<model>/<variant>/), and the
# folder of QAT's checkpoints beside them.
EXPORT_VARIANTS = ("fp32", "int8", "int8-qat")
QAT_WORK = "qat"
_LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "optimum", "onnx", "onnxruntime",
              "onnxruntime-gpu", "relation-compress")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; results are for everyone who can read the folder
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write_bytes`` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``, on failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp.chmod(0o755)  # mkdtemp makes an owner-only folder
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, or of a folder's files (names and contents, sorted by relative path)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def library_versions(names: Iterable[str] = _LIBRARIES) -> dict[str, str]:
    """Installed versions of ``names`` (default: the libraries that shape a run's results), plus Python's;
    read from package metadata, so nothing is imported."""
    versions = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunDir:
    """A run folder: ``manifest.json`` (per-stage records), ``config.yaml`` and one subfolder per stage."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"stages": {}}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def update_stage(self, stage: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the manifest's record of ``stage`` and write it atomically."""
        manifest = self.read_manifest()
        record = manifest["stages"].setdefault(stage, {})
        record.update(fields)
        record["updated"] = now()
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        return record

    def stage(self, stage: str) -> dict[str, Any] | None:
        return self.read_manifest()["stages"].get(stage)

    def ensure_folder(self) -> None:
        """Create the run folder; a clear error when the path is a file."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"run folder {self.path} is a file: pass a folder path to --run-dir")
        self.path.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self, what: str, enabled: bool = True) -> Iterator[None]:
        """Hold the run folder for this process while ``what`` runs; another process is refused in one
        line naming the holder. The lock is the kernel's (``flock``): a killed holder releases it, so a
        stale lock file is simply taken over."""
        if not enabled:
            yield
            return
        self.ensure_folder()
        path = self.path / LOCK
        with open(path, "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise UserError(f"{self.path} is in use by {holder}: wait for it to finish (or stop it), "
                                "or use another --run-dir") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()} ({what}, since {now()})\n")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
