"""The run directory: one folder per run, described by ``manifest.json`` and ``config.yaml``.

The layout, in one place (every stage asks :class:`RunDir` for a path instead of spelling it)::

    RUN/manifest.json       per-stage records (status, config, resolved values, inputs, outputs, metrics,
                            library versions); "schema": SCHEMA_VERSION
    RUN/config.yaml         the distillation's resolved config (parsed back by RunDir.distill_config)
    RUN/distill/            checkpoint.pt, metrics.jsonl (and a trimmed student's tokenizer, kept_ids.json)
    RUN/student/            the distilled student (Hugging Face folder + provenance.json)
    RUN/finetune/NAME/      fine-tuned classifiers
    RUN/export/VARIANT/     the student's variants (compress.variants.VARIANTS: folder, file, runtime of each)
                            + parity.json (compress.variants.ExportReport)
    RUN/export/NAME/VARIANT a fine-tuned model's variants; export/qat/, export/qat-openvino/ the QAT work folders
    RUN/eval.json           cached `compress evaluate` scores;  RUN/bench/  results of `compress bench`

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

from compress.errors import UserError, first_line
from compress.variants import QAT_WORK, VARIANT_FOLDERS, ExportReport

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
LOCK = ".lock"
CHECKPOINT = "checkpoint.pt"  # in distill/ and in every retraining's work folder

# File descriptors of the run locks this process holds. A flock belongs to the open file, which a forked child
# (a DataLoader worker) shares: were the child to keep it, a killed run's orphaned workers would hold its folder
# for seconds and refuse an immediate --resume. So every forked child lets go of its copies at once (pointing
# them at /dev/null keeps the descriptor numbers valid); the parent's lock is unaffected.
_HELD_LOCKS: set[int] = set()


def _drop_held_locks_in_child() -> None:
    if not _HELD_LOCKS:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in _HELD_LOCKS:
        os.dup2(devnull, fd)
    os.close(devnull)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_drop_held_locks_in_child)
# Version of manifest.json's layout: a manifest written by a newer layout is refused, not misread. Manifests
# from before versioning (no "schema" key) have this layout.
SCHEMA_VERSION = 1
DISTILL, STUDENT, FINETUNE, EXPORT, BENCH = "distill", "student", "finetune", "export", "bench"
EVAL_FILE = "eval.json"
PARITY_FILE = "parity.json"
PROVENANCE_FILE = "provenance.json"
_LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "optimum", "onnx", "onnxruntime",
              "onnxruntime-gpu", "openvino", "nncf", "sentence-transformers", "relation-compress")


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


def weights_are_whole(folder: Path) -> bool:
    """Whether ``folder`` holds a config and a whole ``model.safetensors`` (a full disk leaves a truncated file
    that still looks complete; safetensors checks on opening that the header's tensors cover the file exactly)."""
    from safetensors import safe_open

    try:
        with safe_open(str(folder / "model.safetensors"), framework="numpy"):
            pass
    except Exception:  # missing, truncated or not safetensors: each raises its own type
        return False
    return (folder / "config.json").is_file()


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def read_provenance(folder: Path) -> dict[str, Any]:
    """A model folder's ``provenance.json`` ({} when it has none, e.g. a teacher from elsewhere)."""
    path = Path(folder) / PROVENANCE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_provenance(folder: Path, **facts: Any) -> None:
    """Write ``provenance.json`` into a produced model folder: what made it, so that a copy taken out of the
    run still says what it is (llm-compressor's habit of saving the recipe beside the model)."""
    record = {"made_by": "relation-compress", "created": now(), **facts, "versions": library_versions()}
    atomic_write_text(Path(folder) / PROVENANCE_FILE, json.dumps(record, indent=2) + "\n")


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

    # --- the layout ---------------------------------------------------------------------------------
    @property
    def student_dir(self) -> Path:
        return self.path / STUDENT

    @property
    def distill_dir(self) -> Path:
        return self.path / DISTILL

    def distill_remedy(self) -> str:
        """The command that gives this folder a whole student: ``--resume`` where a checkpoint exists (it continues
        a killed run, or rebuilds a damaged student from the final checkpoint), a new distillation otherwise."""
        if (self.distill_dir / CHECKPOINT).exists():
            return f"`compress distill --run-dir {self.path} --resume`"
        return f"`compress distill --run-dir {self.path} ...`"

    @property
    def eval_path(self) -> Path:
        return self.path / EVAL_FILE

    @property
    def bench_dir(self) -> Path:
        return self.path / BENCH

    def finetune_dir(self, name: str) -> Path:
        return self.path / FINETUNE / name

    def export_dir(self, model: str = STUDENT) -> Path:
        """Where a model's variants go: ``export/`` for the student, ``export/<name>/`` for a fine-tuned model."""
        return self.path / EXPORT if model == STUDENT else self.path / EXPORT / model

    def export_stage(self, model: str = STUDENT) -> str:
        """The manifest's stage name of a model's export: ``export`` or ``export/<name>``."""
        return EXPORT if model == STUDENT else f"{EXPORT}/{model}"

    def qat_work_dir(self, variant: str) -> Path:
        """The work folder of a QAT variant's retraining (its checkpoints): ``export/qat/``, ``export/qat-openvino/``."""
        return self.export_dir() / QAT_WORK[variant]

    def exported_models(self) -> list[tuple[str, Path]]:
        """(model, export folder) of every model with a finished export (its parity.json lists the variants)."""
        root = self.export_dir()
        if not root.is_dir():
            return []
        roots = [(STUDENT, root)] + [(p.name, p) for p in sorted(root.iterdir())
                                     if p.is_dir() and p.name not in VARIANT_FOLDERS and p.name not in QAT_WORK.values()
                                     and not p.name.startswith(".")]
        return [(model, folder) for model, folder in roots if (folder / PARITY_FILE).is_file()]

    def export_report(self, model: str = STUDENT) -> ExportReport | None:
        """A model's current export (its ``parity.json``), typed; None when it has not been exported."""
        path = self.export_dir(model) / PARITY_FILE
        if not path.is_file():
            return None
        try:
            return ExportReport.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise UserError(f"{path} is damaged ({first_line(err)}): re-run `compress export`") from None

    # --- the manifest ----------------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"schema": SCHEMA_VERSION, "stages": {}}
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{self.manifest_path} is damaged (not JSON): restore it, or start a new --run-dir") from None
        if manifest.get("schema", 1) > SCHEMA_VERSION:
            raise UserError(f"{self.path} was written by a newer relation-compress (manifest schema "
                            f"{manifest['schema']}, this one reads {SCHEMA_VERSION}): upgrade relation-compress")
        return manifest

    def update_stage(self, stage: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the manifest's record of ``stage`` and write it atomically."""
        manifest = self.read_manifest()
        manifest["schema"] = SCHEMA_VERSION
        record = manifest["stages"].setdefault(stage, {})
        record.update(fields)
        record["updated"] = now()
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        return record

    def stage(self, stage: str) -> dict[str, Any] | None:
        return self.read_manifest()["stages"].get(stage)

    def distill_config(self):
        """The distillation's config as a ``DistillConfig`` (the manifest's copy, parsed and validated), or
        None when the folder holds no distillation."""
        from compress.config import DistillConfig, build_config

        record = self.stage(DISTILL)
        if not record or "config" not in record:
            return None
        return build_config(DistillConfig, base=record["config"], source=str(self.manifest_path))

    def teacher(self) -> str | None:
        """The teacher the run was distilled from (a folder or a Hugging Face id), or None."""
        cfg = self.distill_config()
        return str(cfg.teacher) if cfg and cfg.teacher else None

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
            _HELD_LOCKS.add(handle.fileno())
            try:
                yield
            finally:
                _HELD_LOCKS.discard(handle.fileno())
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
