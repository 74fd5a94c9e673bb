"""Vocabulary trimming: keep only the word pieces a corpus uses, in the tokenizer and in the embedding table.

A multilingual encoder carries XLM-R's 250k-piece vocabulary (multilingual-e5-small: 96M of its 117.5M
parameters are word embeddings). Text in a few known languages uses a small share of it. Trimming keeps

* every special and added token (``<s>``, ``[PAD]``, ``<mask>`` …), whatever the corpus;
* a fallback alphabet, so that unseen text still tokenizes: the 256 byte symbols of a byte-level BPE;
  for WordPiece (also as ``##c``), Unigram and character BPE the single characters of every script the
  corpus uses (LATIN, CYRILLIC, CJK …), or only the characters seen;
* the pieces the corpus produces ``min_count`` times or more, the most frequent first up to ``keep_top``
  ids in all; for BPE each kept piece brings the pieces it is merged from, so the merges stay complete.

Kept ids stay in their original order: new id ``i`` is original id ``kept_ids[i]``. On text made only of
kept pieces the trimmed tokenizer gives exactly the original segmentation (each tokenizer family picks
its pieces among candidates, and trimming only removes candidates that were not picked), so a trimmed
model computes exactly what the original computed. Other text falls back to shorter pieces, characters,
bytes or the unknown token; :func:`segmentation_report` measures how often.
"""

from __future__ import annotations

import collections
import json
import logging
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, pre_tokenizers
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

from compress.corpus import read_corpus
from compress.errors import UserError, first_line
from compress.run_dir import atomic_directory

log = logging.getLogger(__name__)

TRIMMED_VOCAB = "trimmed_vocab.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
CONFIG_TOKEN_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id",
                     "decoder_start_token_id")
_ENCODE_BATCH = 1000


@dataclass
class TrimResult:
    """What :func:`trim_model_folder` wrote and how much smaller it is."""

    out_dir: Path
    kept_ids: list[int]  # new id -> original id (specials included, original order preserved)
    vocab_before: int  # rows of the word-embedding table
    vocab_after: int
    params_before: int
    params_after: int
    size_before_bytes: int  # model weights file(s) on disk
    size_after_bytes: int


# ---------------------------------------------------------------- choosing the pieces


def _backend(tokenizer) -> Tokenizer:
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise UserError(
            f"vocabulary trimming needs a fast tokenizer (tokenizer.json), got {type(tokenizer).__name__}: "
            "load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
        )
    return tokenizer.backend_tokenizer


def _tokenizer_json(tokenizer) -> dict[str, Any]:
    return json.loads(_backend(tokenizer).to_str())


def _model_kind(model_json: dict[str, Any]) -> str:
    """``WordPiece``, ``BPE`` or ``Unigram``; a UserError for any other tokenizer model."""
    kind = model_json["type"]
    if kind not in ("WordPiece", "BPE", "Unigram"):
        raise UserError(f"cannot trim a {kind} tokenizer: only WordPiece, BPE and Unigram (sentencepiece) are supported")
    return kind


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def count_pieces(tokenizer, texts: Iterable[str]) -> collections.Counter:
    """How often each original token id occurs in ``texts`` (no special tokens added, no truncation)."""
    backend = _backend(tokenizer)
    counts: collections.Counter = collections.Counter()
    for chunk in _chunks(texts, _ENCODE_BATCH):
        for encoding in backend.encode_batch(chunk, add_special_tokens=False):
            counts.update(encoding.ids)
    return counts


def _post_processor_ids(processor: dict[str, Any] | None) -> set[int]:
    """Token ids that a TemplateProcessing / RobertaProcessing / BertProcessing (or a Sequence of them) inserts."""
    if not processor:
        return set()
    kind = processor["type"]
    if kind == "Sequence":
        return set().union(*(_post_processor_ids(p) for p in processor["processors"]))
    if kind == "TemplateProcessing":
        return {i for token in processor["special_tokens"].values() for i in token["ids"]}
    if kind in ("RobertaProcessing", "BertProcessing"):
        return {processor["sep"][1], processor["cls"][1]}
    return set()


def special_ids(tokenizer, data: dict[str, Any] | None = None) -> set[int]:
    """Ids that are always kept: special tokens, added tokens and those the post-processor inserts.

    data: the tokenizer's parsed tokenizer.json, when the caller has it already.
    """
    data = data or _tokenizer_json(tokenizer)
    return (set(tokenizer.all_special_ids) | {token["id"] for token in data["added_tokens"]}
            | _post_processor_ids(data["post_processor"]))


def _is_byte_level(data: dict[str, Any]) -> bool:
    def walk(component: dict[str, Any] | None) -> bool:
        if not component:
            return False
        if component["type"] == "ByteLevel":
            return True
        return any(walk(p) for p in component.get("pretokenizers", []))

    return walk(data["pre_tokenizer"])


def _script(char: str) -> str:
    """A character's script, approximated by the first word of its Unicode name (LATIN, CYRILLIC, CJK, HANGUL …)."""
    return unicodedata.name(char, "").split(" ", 1)[0]


def _fallback_ids(data: dict[str, Any], vocab: dict[str, int], seen_ids: Iterable[int], whole_scripts: bool) -> set[int]:
    """Pieces that let unseen words decompose: all 256 bytes of a byte-level BPE; otherwise every character
    that occurs in a counted piece (with ``whole_scripts``: every single-character piece of those characters'
    scripts), alone and (WordPiece, BPE with a prefix) as a continuation."""
    model = data["model"]
    if model["type"] == "BPE" and _is_byte_level(data):
        return {vocab[c] for c in pre_tokenizers.ByteLevel.alphabet() if c in vocab}
    prefix = model.get("continuing_subword_prefix") or ""

    def body(piece: str) -> str:
        return piece[len(prefix):] if prefix and piece.startswith(prefix) else piece

    id_to_piece = {i: p for p, i in vocab.items()}
    chars = {c for token_id in seen_ids for c in body(id_to_piece.get(token_id, ""))}
    if whole_scripts:
        scripts = {_script(c) for c in chars} - {""}
        chars |= {c for piece in vocab if len(c := body(piece)) == 1 and _script(c) in scripts}
    forms = chars | ({prefix + c for c in chars} if prefix else set())
    if model.get("byte_fallback"):
        forms |= {f"<0x{b:02X}>" for b in range(256)}
    return {vocab[f] for f in forms if f in vocab}


def _merges(model_json: dict[str, Any]) -> list[tuple[str, str, str]]:
    """BPE merges as (left, right, result), whichever of the two JSON layouts the file uses.

    As in ``tokenizers``, the result drops the right part's continuing-subword prefix (``##``).
    """
    prefix = model_json.get("continuing_subword_prefix") or ""
    merges = []
    for merge in model_json.get("merges", []):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        merges.append((left, right, left + right.removeprefix(prefix) if prefix else left + right))
    return merges


def _merge_parents(model_json: dict[str, Any], vocab: dict[str, int]) -> dict[int, set[int]]:
    """BPE: id of each merged piece -> ids of the pieces it is merged from."""
    parents: dict[int, set[int]] = collections.defaultdict(set)
    for left, right, result in _merges(model_json):
        merged = vocab.get(result)
        if merged is not None and left in vocab and right in vocab:
            parents[merged] |= {vocab[left], vocab[right]}
    return parents


def _with_ancestors(token_id: int, parents: dict[int, set[int]], kept: set[int]) -> set[int]:
    """``token_id`` and every piece it is (transitively) merged from, less those already in ``kept``."""
    unit, todo = set(), [token_id]
    while todo:
        current = todo.pop()
        if current in kept or current in unit:
            continue
        unit.add(current)
        todo.extend(parents.get(current, ()))
    return unit


def choose_kept_ids(tokenizer, counts: collections.Counter, *, min_count: int = 1,
                    keep_top: int | None = None, whole_scripts: bool = True) -> list[int]:
    """The original ids to keep, sorted: specials, the fallback alphabet, then counted pieces.

    counts: original id -> occurrences (:func:`count_pieces`). Pieces seen ``min_count`` times or more are
    kept, the most frequent first, while the total stays within ``keep_top`` ids (specials and fallback
    alphabet included; a BPE piece only comes with all the pieces it is merged from). The fallback alphabet
    of a WordPiece, Unigram or character BPE tokenizer holds the characters seen or, with ``whole_scripts``,
    every single character of the scripts seen (multilingual-e5-small on chatterbot: +8k ids, and the
    held-out unknown rate goes from 1.6% to 0: Chinese text keeps meeting new characters).
    """
    if min_count < 1:
        raise UserError(f"min_count must be at least 1, got {min_count}: pass --min-count 1 or more")
    data = _tokenizer_json(tokenizer)
    kind = _model_kind(data["model"])
    vocab = _backend(tokenizer).get_vocab(with_added_tokens=False)
    specials = special_ids(tokenizer, data)
    kept = specials | _fallback_ids(data, vocab, set(counts) - specials, whole_scripts)
    if keep_top is not None and keep_top < len(kept):
        raise UserError(
            f"keep_top={keep_top} is smaller than the {len(kept)} ids that are always kept ({len(specials)} special "
            f"tokens, {len(kept) - len(specials)} fallback characters or bytes): pass --keep-top {len(kept)} or more"
        )
    parents = _merge_parents(data["model"], vocab) if kind == "BPE" else {}
    for token_id, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if count < min_count:
            break
        unit = _with_ancestors(token_id, parents, kept)
        if keep_top is None or len(kept) + len(unit) <= keep_top:
            kept |= unit
    return sorted(kept)


# ---------------------------------------------------------------- rewriting the tokenizer


def _check_kept_ids(tokenizer, data: dict[str, Any], kept_ids: list[int]) -> None:
    if list(kept_ids) != sorted(set(kept_ids)):
        raise UserError("kept_ids must be sorted and unique (original order): build them with choose_kept_ids")
    size = len(tokenizer)
    if kept_ids and not 0 <= kept_ids[0] <= kept_ids[-1] < size:
        raise UserError(f"kept_ids run outside the tokenizer's {size} ids: build them with choose_kept_ids")
    missing = sorted(special_ids(tokenizer, data) - set(kept_ids))
    if missing:
        raise UserError(f"kept_ids lack the special token ids {missing}: build them with choose_kept_ids")


def _trim_model_json(model: dict[str, Any], kept_ids: list[int], new_id: dict[int, int]) -> dict[str, Any]:
    """The tokenizer model with only the kept pieces, numbered 0.. in their original order."""
    model = dict(model)
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][old] for old in kept_ids if old < len(model["vocab"])]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
        return model
    kept_pieces = {piece: new_id[old] for piece, old in model["vocab"].items() if old in new_id}
    model["vocab"] = dict(sorted(kept_pieces.items(), key=lambda item: item[1]))
    if model["type"] == "BPE":
        string_layout = bool(model["merges"]) and isinstance(model["merges"][0], str)
        pairs = [(a, b) for a, b, ab in _merges(model) if a in kept_pieces and b in kept_pieces and ab in kept_pieces]
        model["merges"] = [f"{a} {b}" for a, b in pairs] if string_layout else [[a, b] for a, b in pairs]
    return model


def _remap_post_processor(processor: dict[str, Any] | None, new_id: dict[int, int]) -> dict[str, Any] | None:
    if not processor:
        return processor
    processor = json.loads(json.dumps(processor))  # a deep copy
    kind = processor["type"]
    if kind == "Sequence":
        processor["processors"] = [_remap_post_processor(p, new_id) for p in processor["processors"]]
    elif kind == "TemplateProcessing":
        for token in processor["special_tokens"].values():
            token["ids"] = [new_id[i] for i in token["ids"]]
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            processor[key] = [processor[key][0], new_id[processor[key][1]]]
    return processor


def _constructor_kwargs(tokenizer) -> dict[str, Any]:
    """The tokenizer's own settings (special tokens, lower-casing, max length) without files or old ids."""
    dropped = {"vocab_file", "merges_file", "tokenizer_file", "added_tokens_decoder", "name_or_path", "tokenizer_object"}
    return {key: value for key, value in tokenizer.init_kwargs.items() if key not in dropped}


def trim_tokenizer(tokenizer, kept_ids: list[int], out_dir: Path) -> PreTrainedTokenizerFast:
    """Save into ``out_dir`` a tokenizer whose id ``i`` is the original's ``kept_ids[i]``; return it, reloaded.

    Unigram keeps the kept pieces with their scores; WordPiece the kept pieces; BPE the kept pieces and the
    merges whose two parts and result are all kept. Added tokens and the post-processor's special-token
    ids are renumbered. Written with ``save_pretrained``, so ``AutoTokenizer.from_pretrained(out_dir)`` works.
    """
    data = _tokenizer_json(tokenizer)
    _model_kind(data["model"])
    _check_kept_ids(tokenizer, data, kept_ids)
    new_id = {old: new for new, old in enumerate(kept_ids)}
    data["model"] = _trim_model_json(data["model"], kept_ids, new_id)
    data["added_tokens"] = [dict(token, id=new_id[token["id"]]) for token in data["added_tokens"]]
    data["post_processor"] = _remap_post_processor(data["post_processor"], new_id)
    backend = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    if backend.get_vocab_size(with_added_tokens=True) != len(kept_ids):
        raise UserError(
            f"the trimmed tokenizer has {backend.get_vocab_size(with_added_tokens=True)} ids, expected {len(kept_ids)}: "
            "kept_ids name an added token that sits between vocabulary pieces; build them with choose_kept_ids"
        )
    trimmed = type(tokenizer)(tokenizer_object=backend, **_constructor_kwargs(tokenizer))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    trimmed.save_pretrained(out_dir)
    return AutoTokenizer.from_pretrained(out_dir)


# ---------------------------------------------------------------- slicing the model


def trim_embeddings(model: PreTrainedModel, kept_ids: list[int]) -> None:
    """Keep rows ``kept_ids`` of the word embeddings ``[V, H]`` → ``[len(kept_ids), H]``, in place.

    An output layer (MLM head: weight ``[V, H]``, tied or not, bias ``[V]``) is sliced alike;
    ``config.vocab_size`` becomes ``len(kept_ids)`` and the config's special-token ids are renumbered.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    if not kept_ids or kept_ids[-1] >= rows or list(kept_ids) != sorted(set(kept_ids)):
        raise UserError(f"kept_ids must be sorted, unique ids below the model's {rows} embedding rows: "
                        "check that the tokenizer belongs to this model")
    new_id = {old: new for new, old in enumerate(kept_ids)}
    config_ids = {key: getattr(model.config, key, None) for key in CONFIG_TOKEN_KEYS}
    lost = {key: value for key, value in config_ids.items() if isinstance(value, int) and value not in new_id}
    if lost:
        raise UserError(f"kept_ids lack the model config's {lost}: add these ids to kept_ids")
    index = torch.tensor(kept_ids)
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is model.get_input_embeddings().weight
    old_input = model.get_input_embeddings().weight.detach().clone()
    old_output = output.weight.detach().clone() if output is not None and not tied else None
    old_bias = output.bias.detach().clone() if output is not None and getattr(output, "bias", None) is not None else None
    model.resize_token_embeddings(len(kept_ids))  # new shapes, ties and config.vocab_size; rows filled below
    with torch.no_grad():
        embeddings = model.get_input_embeddings()
        embeddings.weight.copy_(old_input[index])
        output = model.get_output_embeddings()
        if old_output is not None:
            output.weight.copy_(old_output[index])
        if old_bias is not None:
            output.bias.copy_(old_bias[index])  # in place: a bias shared with the head (BERT) follows
    for key, value in config_ids.items():
        if isinstance(value, int):
            setattr(model.config, key, new_id[value])
    if embeddings.padding_idx is not None and isinstance(model.config.pad_token_id, int):
        embeddings.padding_idx = model.config.pad_token_id
    parent = model.get_submodule(_embeddings_parent(model))
    if isinstance(getattr(parent, "padding_idx", None), int) and isinstance(model.config.pad_token_id, int):
        parent.padding_idx = model.config.pad_token_id  # RoBERTa-style position ids count from the padding id


def _embeddings_parent(model: PreTrainedModel) -> str:
    """Dotted name of the module that holds the word-embedding table (e.g. ``embeddings``)."""
    table = model.get_input_embeddings()
    name = next(n for n, m in model.named_modules() if m is table)
    return name.rpartition(".")[0]


def config_token_ids(config: PretrainedConfig) -> set[int]:
    """Special-token ids the model config names (pad, bos, eos …): they must survive trimming."""
    return {value for key in CONFIG_TOKEN_KEYS if isinstance(value := getattr(config, key, None), int)}


def model_kept_ids(tokenizer, config: PretrainedConfig, counts: collections.Counter, *, min_count: int = 1,
                   keep_top: int | None = None, whole_scripts: bool = True) -> list[int]:
    """:func:`choose_kept_ids` plus the ids ``config`` names (pad, bos, eos, …), which the model's embedding table
    must keep: the ids a model trimmed for ``counts`` keeps, sorted. The one choice behind ``compress trim-vocab``,
    ``student.trim_vocab`` and ``compress plan --trim-vocab``."""
    kept = choose_kept_ids(tokenizer, counts, min_count=min_count, keep_top=keep_top, whole_scripts=whole_scripts)
    return sorted(set(kept) | config_token_ids(config))


# ---------------------------------------------------------------- a whole model folder


def _weights_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def _check_model_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise UserError(f"model folder {folder} does not exist: pass a local Hugging Face model folder")
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a model folder (no config.json in it): pass a Hugging Face model folder")


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"output folder {out_dir} already exists and is not empty: choose a new --out folder")


def _model_class(config: PretrainedConfig):
    """The class config.architectures names (a head is kept with its output layer), else AutoModel."""
    for name in config.architectures or []:
        if (cls := getattr(transformers, name, None)) is not None:
            return cls
    return AutoModel


def _load_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as err:  # tokenizers and sentencepiece raise their own types for a bad file
        raise UserError(f"cannot load the tokenizer of {folder} ({first_line(err)}): check the folder is complete") from None


def _load_model(folder: Path) -> PreTrainedModel:
    try:
        config = AutoConfig.from_pretrained(folder)
        return _model_class(config).from_pretrained(folder, config=config, dtype="auto").eval()
    except Exception as err:  # safetensors and torch raise their own types for a bad file
        raise UserError(f"cannot load the model in {folder} ({first_line(err)}): check the folder is complete") from None


def trim_model_folder(model: str | Path, corpora: list[str | Path], out_dir: Path, *, min_count: int = 1,
                      keep_top: int | None = None, whole_scripts: bool = True) -> TrimResult:
    """Write into ``out_dir`` the model of folder ``model`` with only the pieces ``corpora`` use.

    min_count, keep_top, whole_scripts: as for :func:`choose_kept_ids`.
    ``out_dir`` receives the model (embedding rows sliced), the trimmed tokenizer and ``trimmed_vocab.json``
    (kept ids and settings), all at once: it appears complete or not at all.
    """
    source, out_dir = Path(model), Path(out_dir)
    _check_model_folder(source)
    _check_out_dir(out_dir)
    if not corpora:
        raise UserError("no corpus given: pass --corpus with text in the languages to keep")
    texts = [line for corpus in corpora for line in read_corpus(corpus).lines]
    tokenizer = _load_tokenizer(source)
    encoder = _load_model(source)
    kept_ids = model_kept_ids(tokenizer, encoder.config, count_pieces(tokenizer, texts), min_count=min_count,
                              keep_top=keep_top, whole_scripts=whole_scripts)
    vocab_before, params_before = encoder.get_input_embeddings().weight.shape[0], encoder.num_parameters()
    trim_embeddings(encoder, kept_ids)
    with atomic_directory(out_dir) as tmp:
        encoder.save_pretrained(tmp)
        trim_tokenizer(tokenizer, kept_ids, tmp)
        record = {"kept_ids": kept_ids, "source": str(model), "min_count": min_count, "keep_top": keep_top,
                  "whole_scripts": whole_scripts}
        (tmp / TRIMMED_VOCAB).write_text(json.dumps(record) + "\n", encoding="utf-8")
        size_after = _weights_size(tmp)
    log.info("trimmed %s: %d → %d pieces, %d → %d parameters", source, vocab_before, len(kept_ids),
             params_before, encoder.num_parameters())
    return TrimResult(out_dir=out_dir, kept_ids=kept_ids, vocab_before=vocab_before, vocab_after=len(kept_ids),
                      params_before=params_before, params_after=encoder.num_parameters(),
                      size_before_bytes=_weights_size(source), size_after_bytes=size_after)


def load_kept_ids(model_dir: Path) -> list[int] | None:
    """new id -> original id of a trimmed folder, or None when the folder was not trimmed."""
    path = Path(model_dir) / TRIMMED_VOCAB
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["kept_ids"]


# ---------------------------------------------------------------- what trimming did to some text


def _spans(encoding, to_original: list[int] | None) -> collections.Counter:
    """Multiset of (start, end, original id) of an encoding's tokens."""
    ids = encoding.ids if to_original is None else [to_original[i] for i in encoding.ids]
    return collections.Counter((start, end, i) for (start, end), i in zip(encoding.offsets, ids))


def segmentation_report(original_tok, trimmed_tok, kept_ids: list[int],
                        texts_by_language: dict[str, list[str]]) -> dict[str, dict[str, float | int]]:
    """Per language, how the trimmed tokenizer segments ``texts`` compared with the original.

    A token of the original segmentation is unchanged when the trimmed one has a token with the same
    character span that maps back (``kept_ids[new id]``) to the same original id. Reported: texts, tokens
    (original) and tokens_trimmed, changed_texts/changed_tokens (counts) and their shares, and the
    unknown-token rates under both tokenizers.
    """
    original, trimmed = _backend(original_tok), _backend(trimmed_tok)
    report = {}
    for language, texts in texts_by_language.items():
        before = original.encode_batch(texts, add_special_tokens=False)
        after = trimmed.encode_batch(texts, add_special_tokens=False)
        tokens = changed_tokens = changed_texts = tokens_after = unk_before = unk_after = 0
        for old, new in zip(before, after):
            lost = sum((_spans(old, None) - _spans(new, kept_ids)).values())
            tokens += len(old.ids)
            tokens_after += len(new.ids)
            changed_tokens += lost
            changed_texts += lost > 0
            unk_before += sum(i == original_tok.unk_token_id for i in old.ids)
            unk_after += sum(i == trimmed_tok.unk_token_id for i in new.ids)
        report[language] = {
            "texts": len(texts), "tokens": tokens, "tokens_trimmed": tokens_after,
            "changed_texts": changed_texts, "changed_tokens": changed_tokens,
            "changed_text_share": changed_texts / max(len(texts), 1),
            "changed_token_share": changed_tokens / max(tokens, 1),
            "unk_rate_original": unk_before / max(tokens, 1), "unk_rate": unk_after / max(tokens_after, 1),
        }
    return report
