"""How long an input a model's position table allows: one rule for training, export, bench and saved tokenizers.

Torch-free (it reads a config's fields), so that the bench of an ONNX folder can use it.
"""

from __future__ import annotations

from typing import Any, Mapping

# Families whose position ids start after the pad id (RoBERTa's create_position_ids_from_input_ids): the table's
# first pad_token_id + 1 rows are never used for real tokens.
OFFSET_POSITION_TYPES = ("roberta", "xlm-roberta", "camembert", "mpnet")

# transformers' VERY_LARGE_INTEGER: what a tokenizer saved without a length states as model_max_length.
UNSET_LIMIT = int(1e29)


def max_sequence_length(config: Mapping[str, Any] | Any) -> int | None:
    """The longest input (tokens, specials included) of a model whose ``config`` (a PretrainedConfig or the dict of
    config.json) has ``max_position_embeddings``; None when it has no position table."""
    get = config.get if isinstance(config, Mapping) else lambda key, default=None: getattr(config, key, default)
    positions = get("max_position_embeddings")
    if positions is None:
        return None
    if get("model_type") in OFFSET_POSITION_TYPES:
        return positions - (get("pad_token_id") or 0) - 1
    return positions


def state_real_limit(tokenizer: Any, config: Mapping[str, Any] | Any) -> None:
    """Set ``tokenizer.model_max_length`` to what the model allows where the tokenizer states more, or nothing (the
    1e30 sentinel of a tokenizer saved without a limit, which serving libraries that size inputs from it refuse)."""
    limit = max_sequence_length(config)
    if limit is not None and (tokenizer.model_max_length is None or tokenizer.model_max_length > limit):
        tokenizer.model_max_length = limit
