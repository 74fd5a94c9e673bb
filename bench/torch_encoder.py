"""The PyTorch twin of ``bench.encoders.OrtEncoder`` (imports torch and transformers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.encoders import _unsort, head_labels, length_sorted_batches
from compress.errors import UserError, first_line
from compress.pooling import mean_pool


class TorchEncoder:
    """A Hugging Face folder in PyTorch: the base model for embeddings, the head (if saved) for logits.

    ``model`` may be passed in already loaded (fine-tuning scores its model while it trains).
    """

    def __init__(self, folder: Path | str, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 max_length: int = 128, batch_size: int = 32, name: str | None = None, model=None, tokenizer=None):
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(folder)
        self.labels = head_labels(folder / "config.json") if (folder / "config.json").is_file() else None
        try:
            if model is None:
                cls = AutoModelForSequenceClassification if self.labels else AutoModel
                model = cls.from_pretrained(folder).to(dtype)
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot load {folder} ({first_line(err)}): pass a Hugging Face model folder") from None
        self.model = model.to(device).eval()
        self.device, self.max_length, self.batch_size = device, max_length, batch_size
        self.name = name or folder.name

    def _base(self):
        """The encoder without its head (``base_model`` of a *ForSequenceClassification model)."""
        return getattr(self.model, "base_model", self.model)

    @torch.inference_mode()
    def _run(self, head: bool, texts: list[str], pairs: list[str] | None) -> np.ndarray:
        parts = []
        for index in length_sorted_batches(texts, self.batch_size):
            batch = self.tokenizer([texts[i] for i in index], [pairs[i] for i in index] if pairs else None,
                                   padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            if head:
                out = self.model(**batch).logits
            else:
                out = mean_pool(self._base()(**batch).last_hidden_state, batch["attention_mask"])
            parts.append((index, out.float().cpu().numpy()))
        return _unsort(parts, len(texts))

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._run(False, texts, None)

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        if not self.labels and not hasattr(self.model, "classifier"):
            raise UserError(f"{self.name} has no classification head: fine-tune it first (`compress finetune`)")
        return self._run(True, texts, pairs)
