"""Compare an ONNX Runtime session with the PyTorch model it came from.

Two kinds of input: real text (batched with padding, as in serving) and random token ids at several
lengths with padded rows. Reported: the max abs difference of the last hidden states over real tokens,
the cosine of mean-pooled sentence embeddings (mean and worst), and how often both agree on each
sentence's nearest neighbour among the others (what a search index would notice), overall and over the
sentences whose reference neighbour is clear (its similarity beats the runner-up's by at least
:data:`CLEAR_MARGIN`): near-ties flip under any change of precision — bfloat16 included — so the second
figure says what a quantized model gets wrong where the answer was not a coin toss.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass

import numpy as np
import torch

from compress.pooling import mean_pool

RANDOM_LENGTHS = (8, 32, 128)
CLEAR_MARGIN = 0.01  # cosine gap between the reference's nearest and second-nearest neighbour


@dataclass
class ParityReport:
    max_abs_diff: float
    mean_cosine: float
    min_cosine: float
    nn_agreement: float
    samples: int
    prediction_agreement: float | None = None  # classifiers: share of rows with the same predicted class
    mean_abs_diff: float = 0.0  # over real tokens (encoders) or logits (classifiers)
    nn_agreement_clear: float | None = None  # over rows whose reference neighbour is clear (None: no such row)
    nn_clear_share: float = 1.0  # share of rows whose reference neighbour is clear

    def as_dict(self) -> dict:
        return {k: round(v, 7) if isinstance(v, float) else v for k, v in asdict(self).items() if v is not None}

    def agreement(self) -> str:
        """The agreement phrase: same prediction (classifiers) or nearest-neighbour agreement (encoders)."""
        return agreement_text(asdict(self))


def agreement_text(report: dict) -> str:
    """The agreement phrase of a parity report (a :class:`ParityReport` or its ``as_dict`` form)."""
    if report.get("prediction_agreement") is not None:
        return f"same prediction {100 * report['prediction_agreement']:.1f}%"
    text = f"nearest-neighbour agreement {100 * report['nn_agreement']:.1f}%"
    if report.get("nn_agreement_clear") is not None and report.get("nn_clear_share", 1.0) < 1.0:
        text += (f" ({100 * report['nn_agreement_clear']:.1f}% on the {100 * report['nn_clear_share']:.0f}% of rows "
                 f"whose neighbour is clear)")
    return text


def encode(tokenizer, texts: list[str], max_length: int = 128) -> list[dict[str, np.ndarray]]:
    """Batches of 8 texts, padded to the longest in each batch, as int64 numpy arrays."""
    batches = []
    for i in range(0, len(texts), 8):
        enc = tokenizer(texts[i : i + 8], padding=True, truncation=True, max_length=max_length, return_tensors="np")
        batches.append({k: v.astype(np.int64) for k, v in enc.items()})
    return batches


def random_batches(vocab_size: int, special_ids: set[int], seed: int, max_positions: int) -> list[dict[str, np.ndarray]]:
    """Random ids (no special tokens) at several lengths; the second row of each batch is half padding."""
    rng = np.random.default_rng(seed)
    allowed = np.array([i for i in range(min(vocab_size, 30000)) if i not in special_ids])
    batches = []
    for length in RANDOM_LENGTHS:
        length = min(length, max_positions)
        ids = rng.choice(allowed, size=(4, length))
        mask = np.ones_like(ids)
        mask[1, length // 2 :] = 0
        batches.append({"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64),
                        "token_type_ids": np.zeros_like(ids, dtype=np.int64)})
    return batches


def _feed(session, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs the graph declares. A BERT graph paired with a tokenizer that returns no
    ``token_type_ids`` (multilingual-e5: BERT weights, XLM-R tokenizer) gets zeros, as PyTorch uses."""
    names = {i.name for i in session.get_inputs()}
    feed = {k: v for k, v in batch.items() if k in names}
    if "token_type_ids" in names and "token_type_ids" not in feed:
        feed["token_type_ids"] = np.zeros_like(batch["input_ids"])
    return feed


def hidden_states(model, session, batch) -> tuple[np.ndarray, np.ndarray]:
    """(PyTorch, ONNX Runtime) outputs of one batch: last hidden states ``[B, T, H]`` of an encoder,
    or logits ``[B, C]`` of a model with a classification head."""
    params = inspect.signature(model.forward).parameters  # DistilBERT and MPNet take no token types
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())  # wrappers (NNCF), **kwargs
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in batch.items() if takes_all or k in params})
    name = "logits" if hasattr(out, "logits") else "last_hidden_state"
    (ort,) = session.run([name], _feed(session, batch))
    return getattr(out, name).numpy(), ort




def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def compare(model, session, batches: list[dict[str, np.ndarray]]) -> ParityReport:
    """Parity of ``session`` against ``model`` (in eval mode) over ``batches``. For a classifier the
    "embeddings" compared are its logit vectors."""
    max_diff, pt_emb, ort_emb, same_class, abs_sum, count = 0.0, [], [], [], 0.0, 0
    for batch in batches:
        pt, ort = hidden_states(model, session, batch)
        logits = pt.ndim == 2
        diff = np.abs(pt - ort) if logits else np.abs(pt - ort)[batch["attention_mask"].astype(bool)]  # real tokens
        max_diff, abs_sum, count = max(max_diff, float(diff.max())), abs_sum + float(diff.sum()), count + diff.size
        if logits:
            same_class.append(pt.argmax(1) == ort.argmax(1))
            pt_emb.append(pt.astype(np.float64))
            ort_emb.append(ort.astype(np.float64))
        else:
            # float64, so that cosines near 1 are resolved (and never exceed it)
            pt_emb.append(mean_pool(pt.astype(np.float64), batch["attention_mask"]))
            ort_emb.append(mean_pool(ort.astype(np.float64), batch["attention_mask"]))
    a, b = _unit(np.concatenate(pt_emb)), _unit(np.concatenate(ort_emb))
    cos = np.clip((a * b).sum(1), -1.0, 1.0)
    same, clear = neighbour_matches(a, b)
    return ParityReport(max_abs_diff=max_diff, mean_abs_diff=abs_sum / max(count, 1), mean_cosine=float(cos.mean()),
                        min_cosine=float(cos.min()), nn_agreement=float(same.mean()),
                        nn_agreement_clear=float(same[clear].mean()) if clear.any() else None,
                        nn_clear_share=float(clear.mean()), samples=len(a),
                        prediction_agreement=float(np.concatenate(same_class).mean()) if same_class else None)


def neighbour_matches(a: np.ndarray, b: np.ndarray, margin: float = CLEAR_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """For unit rows ``a`` (reference) and ``b`` [n, d]: two bool [n] arrays — whether row i's nearest other row
    is the same under both, and whether the reference's nearest beats its second-nearest by at least ``margin``.
    Fewer than 3 rows: every row matches and is clear (no neighbour to disagree on)."""
    if len(a) < 3:
        return np.ones(len(a), bool), np.ones(len(a), bool)
    sim_a, sim_b = a @ a.T, b @ b.T
    np.fill_diagonal(sim_a, -np.inf)
    np.fill_diagonal(sim_b, -np.inf)
    top2 = np.sort(sim_a, axis=1)[:, -2:]
    return sim_a.argmax(1) == sim_b.argmax(1), top2[:, 1] - top2[:, 0] >= margin

