"""Distillation batches from token shards, through a torch ``DataLoader``.

Item ``i`` of :class:`ShardBatches` is micro-batch ``i`` of the run from ``start_step`` on: the
sampler's (corpus, row) draws for that (step, micro-batch, rank), read from the shards and
padded to the longest row. Worker processes build them ahead of the training step (pinned memory on
CUDA, ``prefetch_factor`` batches each), so the device never waits on the disk or on padding.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from compress.corpus import MixedSampler
from compress.errors import UserError
from compress.token_shards import TokenCorpus


def pad_rows(rows: Sequence[np.ndarray], pad_id: int, pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids ``[B, T]`` int64, attention_mask ``[B, T]`` int64), T = the longest row, or ``pad_to`` when
    given (static shapes; rows are never longer than the corpus's max_length)."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    ids = np.full((len(rows), max(int(lengths.max()), pad_to or 0)), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    mask = (np.arange(ids.shape[1]) < lengths[:, None]).astype(np.int64)
    return torch.from_numpy(ids), torch.from_numpy(mask)


class ShardBatches(Dataset):
    """Micro-batches ``start_step * grad_accum`` ... ``steps * grad_accum - 1`` of one rank, in order.

    Each item: ``{"input_ids": [B, T], "attention_mask": [B, T], "tokens": real tokens}``, or
    ``{"error": message}`` when a shard turns out to be damaged (raised as a UserError by the caller:
    an exception inside a worker would reach the user as a traceback).
    ``id_map [V_teacher]`` (optional) renumbers the stored ids (a trimmed student's vocabulary); ``pad_to`` pads
    every batch to that length (``data.pad_to_max_length``).
    """

    def __init__(self, corpora: Sequence[TokenCorpus], sampler: MixedSampler, micro_batch: int, grad_accum: int,
                 rank: int, start_step: int, steps: int, pad_id: int, id_map: np.ndarray | None = None,
                 pad_to: int | None = None):
        self.corpora, self.sampler = list(corpora), sampler
        self.micro_batch, self.grad_accum, self.rank = micro_batch, grad_accum, rank
        self.start_step, self.steps, self.pad_id, self.id_map = start_step, steps, pad_id, id_map
        self.pad_to = pad_to

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step) * self.grad_accum

    def rows(self, step: int, micro: int) -> list[np.ndarray]:
        """The token rows of one micro-batch (a pure function of step, micro-batch and rank)."""
        which, rows = self.sampler.draw(self.micro_batch, step, micro, self.rank)
        return [self.corpora[c][r] for c, r in zip(which.tolist(), rows.tolist())]

    def __getitem__(self, index: int) -> dict[str, Any]:
        step, micro = divmod(index, self.grad_accum)
        try:
            rows = self.rows(self.start_step + step, micro)
        except UserError as err:
            return {"error": str(err)}
        if self.id_map is not None:
            rows = [self.id_map[row] for row in rows]
        ids, mask = pad_rows(rows, self.pad_id, self.pad_to)
        return {"input_ids": ids, "attention_mask": mask, "tokens": int(mask.sum())}


def resolve_workers(requested: int | str, device: torch.device) -> int:
    """``auto``: two workers per process on CUDA; none on CPU, where the step itself uses every core and
    reading a batch from the shards costs well under a millisecond."""
    if requested == "auto":
        return 2 if device.type == "cuda" else 0
    return int(requested)


def make_loader(dataset: ShardBatches, workers: int, device: torch.device, prefetch: int = 4) -> DataLoader:
    """A DataLoader over micro-batches in order (``batch_size=None``: each item already is a batch).

    It gets a generator of its own: DataLoader seeds its workers from it when an iterator starts, and
    drawing from the global one would shift the dropout masks of a resumed run.
    """
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, generator=torch.Generator(),
                      pin_memory=device.type == "cuda", prefetch_factor=prefetch if workers else None,
                      persistent_workers=False, multiprocessing_context="fork" if workers else None)


def batches(loader: DataLoader):
    """The loader's batches; a damaged shard ends the run with its one-line error."""
    for batch in loader:
        if "error" in batch:
            raise UserError(batch["error"])
        yield batch
