"""sentence-transformers modules for a produced model folder, so ``SentenceTransformer(folder)`` loads it as is.

sentence-transformers reads ``modules.json`` (Transformer → Pooling [→ Normalize]), ``sentence_bert_config.json``
(max sequence length) and ``1_Pooling/config.json`` (the pooling mode). Without them it warns that no
sentence-transformers model was found and guesses mean pooling. The pooling written here is the teacher's own
where the teacher is a sentence-transformers folder (all-MiniLM-L6-v2: mean, then normalize), and mean pooling
otherwise (multilingual-e5 and plain Hugging Face encoders: what the distillation's evaluation uses).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODULES_FILE = "modules.json"
POOLING_DIR = "1_Pooling"
_MEAN = {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
         "pooling_mode_mean_sqrt_len_tokens": False}


def teacher_pooling(teacher: str | Path | None) -> dict[str, Any]:
    """{"pooling": pooling-mode flags, "normalize": bool, "max_seq_length": int | None} from a teacher folder's
    sentence-transformers files; mean pooling, no normalization and no length when it has none."""
    found: dict[str, Any] = {"pooling": dict(_MEAN), "normalize": False, "max_seq_length": None}
    folder = Path(teacher) if teacher else None
    if not folder or not (folder / MODULES_FILE).is_file():
        return found
    modules = json.loads((folder / MODULES_FILE).read_text(encoding="utf-8"))
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("models.Pooling") and (folder / module["path"] / "config.json").is_file():
            config = json.loads((folder / module["path"] / "config.json").read_text(encoding="utf-8"))
            found["pooling"] = {k: v for k, v in config.items() if k.startswith("pooling_mode_") or k == "include_prompt"}
        elif kind.endswith("models.Normalize"):
            found["normalize"] = True
    if (folder / "sentence_bert_config.json").is_file():
        found["max_seq_length"] = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8")).get("max_seq_length")
    return found


def write_sentence_modules(folder: Path, *, hidden: int, max_seq_length: int, pooling: dict[str, Any]) -> None:
    """Write ``modules.json``, ``sentence_bert_config.json`` and ``1_Pooling/config.json`` (``2_Normalize/`` when
    ``pooling["normalize"]``) into ``folder``, a model folder whose embedding width is ``hidden``."""
    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"}]
    if pooling["normalize"]:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / MODULES_FILE).write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": int(max_seq_length), "do_lower_case": False}, indent=2) + "\n", encoding="utf-8")
    (folder / POOLING_DIR).mkdir(exist_ok=True)
    (folder / POOLING_DIR / "config.json").write_text(
        json.dumps({"word_embedding_dimension": int(hidden), **pooling["pooling"]}, indent=2) + "\n", encoding="utf-8")


def copy_sentence_modules(src: Path, dst: Path) -> None:
    """The sentence-transformers files of ``src`` into ``dst`` (an export of the same model)."""
    import shutil

    for name in (MODULES_FILE, "sentence_bert_config.json"):
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dst) / name)
    for sub in (POOLING_DIR, "2_Normalize"):
        if (Path(src) / sub).is_dir():
            shutil.copytree(Path(src) / sub, Path(dst) / sub, dirs_exist_ok=True)
