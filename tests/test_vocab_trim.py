"""Vocabulary trimming on tiny BERT (WordPiece), RoBERTa (byte-level BPE) and XLM-R (Unigram) folders.

Each family is trimmed once (module fixture) to a corpus of a few English and German lines; the tests load
the result through AutoModel / AutoTokenizer.from_pretrained, as any user would.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM, BertModel,
    BertTokenizerFast, PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast,
)

from compress.errors import UserError
from compress.vocab_trim import (
    TRIMMED_VOCAB, choose_kept_ids, count_pieces, load_kept_ids, segmentation_report, special_ids, trim_model_folder,
    trim_tokenizer,
)
from export.onnx_export import export_fp32
from reference.tiny_models import (
    BERT_SPECIALS, BUILDERS, SAMPLE_BY_LANGUAGE, SAMPLE_TEXT, bert_vocab, unigram_vocab, write_corpus,
)

FAMILIES = tuple(BUILDERS)  # bert (WordPiece), roberta (byte-level BPE), xlmr (Unigram)

# The tiny RoBERTa's BPE was trained on all of the English sample: trim to part of it, or nothing goes.
KEPT_TEXT = SAMPLE_BY_LANGUAGE["en"][:8] + SAMPLE_BY_LANGUAGE["de"][:4]
UNCOVERED_TEXT = [
    "zebras juggle xylophones quietly.",  # unseen words, seen characters
    "Быстрая коричневая лиса",  # unseen script
    "敏捷的棕色狐狸",
    "Great job 🙂👍🏽!",  # emoji
    "Übermorgen ist Dienstag, señor.",
]


@pytest.fixture(scope="module", params=FAMILIES, ids=FAMILIES)
def trimmed(request, tmp_path_factory):
    """(family, source folder, TrimResult) of each tiny teacher trimmed to KEPT_TEXT."""
    source = request.getfixturevalue(f"tiny_{request.param}_dir_shared")
    work = tmp_path_factory.mktemp(f"trim-{request.param}")
    result = trim_model_folder(source, [write_corpus(work / "kept.txt", KEPT_TEXT)], work / "trimmed")
    return request.param, source, result


def _load(folder: Path):
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def test_covered_text_keeps_ids_and_outputs(trimmed):
    _, source, result = trimmed
    tok_before, model_before = _load(source)
    tok_after, model_after = _load(result.out_dir)
    before = tok_before(KEPT_TEXT, padding=True, return_tensors="pt")
    after = tok_after(KEPT_TEXT, padding=True, return_tensors="pt")
    kept = torch.tensor(result.kept_ids)
    assert torch.equal(kept[after["input_ids"]], before["input_ids"])  # specials and padding included
    assert torch.equal(after["attention_mask"], before["attention_mask"])
    with torch.no_grad():
        hidden_before = model_before(**before).last_hidden_state
        hidden_after = model_after(**after).last_hidden_state
    torch.testing.assert_close(hidden_after, hidden_before, atol=1e-5, rtol=0)


def test_uncovered_text_falls_back_and_runs(trimmed):
    family, _, result = trimmed
    tok, model = _load(result.out_dir)
    enc = tok(UNCOVERED_TEXT, padding=True, return_tensors="pt")
    assert int(enc["input_ids"].max()) < result.vocab_after
    with torch.no_grad():
        assert torch.isfinite(model(**enc).last_hidden_state).all()
    pieces = [tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"]) for text in UNCOVERED_TEXT]
    unseen_words, cyrillic = pieces[0], pieces[1]
    assert tok.unk_token not in unseen_words  # seen characters: unseen words become shorter pieces
    assert max(len(p.lstrip("#▁Ġ")) for p in unseen_words) <= 3
    if family == "roberta":  # byte-level: never unknown, and every text decodes back exactly
        assert all(tok.unk_token not in p for p in pieces)
        assert [tok.decode(tok(t, add_special_tokens=False)["input_ids"]) for t in UNCOVERED_TEXT] == UNCOVERED_TEXT
    else:  # characters absent from the corpus were dropped: unknown, not a crash
        assert tok.unk_token in cyrillic


def test_special_tokens_survive(trimmed):
    _, source, result = trimmed
    tok_before, _ = _load(source)
    tok_after, model = _load(result.out_dir)
    for name in ("cls_token", "sep_token", "pad_token", "mask_token", "unk_token"):
        new_id = getattr(tok_after, f"{name}_id")
        assert 0 <= new_id < result.vocab_after
        assert result.kept_ids[new_id] == getattr(tok_before, f"{name}_id"), name
    assert model.config.pad_token_id == tok_after.pad_token_id
    masked = tok_after(f"The weather is {tok_after.mask_token} today.")["input_ids"]
    assert masked.count(tok_after.mask_token_id) == 1
    batch = tok_after(["Yes.", KEPT_TEXT[2]], padding=True, return_tensors="pt")
    first = batch["input_ids"][0]
    assert first[0] == tok_after.cls_token_id and (first[batch["attention_mask"][0] == 0] == tok_after.pad_token_id).all()
    pair = tok_after("Yes.", "Short one.")["input_ids"]
    assert pair.count(tok_after.sep_token_id) >= 2


def test_folder_shrinks_and_records_kept_ids(trimmed):
    _, source, result = trimmed
    assert result.vocab_after == len(result.kept_ids) < result.vocab_before
    assert result.params_after < result.params_before and result.size_after_bytes < result.size_before_bytes
    assert AutoConfig.from_pretrained(result.out_dir).vocab_size == result.vocab_after
    assert len(AutoTokenizer.from_pretrained(result.out_dir)) == result.vocab_after
    assert load_kept_ids(result.out_dir) == result.kept_ids
    assert load_kept_ids(source) is None
    record = json.loads((result.out_dir / TRIMMED_VOCAB).read_text())
    assert record["source"] == str(source) and record["min_count"] == 1 and record["keep_top"] is None


def test_bpe_merges_stay_closed(tiny_roberta_dir_shared, tmp_path):
    result = trim_model_folder(tiny_roberta_dir_shared, [write_corpus(tmp_path / "c.txt", KEPT_TEXT)], tmp_path / "out")
    model = json.loads((result.out_dir / "tokenizer.json").read_text())["model"]
    vocab = model["vocab"]
    assert sorted(vocab.values()) == list(range(len(vocab)))
    assert model["merges"] and all(a in vocab and b in vocab and a + b in vocab for a, b in model["merges"])


def test_character_bpe_with_subword_prefix(tmp_path):
    """BPE without byte level, ``##`` continuations (merges drop the right part's prefix): covered text keeps its
    segmentation, unseen words of seen characters become characters, unseen characters [UNK]."""
    backend = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.train_from_iterator(SAMPLE_TEXT, trainers.BpeTrainer(
        vocab_size=700, special_tokens=BERT_SPECIALS, continuing_subword_prefix="##", show_progress=False))
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    original = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]")
    kept = choose_kept_ids(original, count_pieces(original, KEPT_TEXT))
    trimmed = trim_tokenizer(original, kept, tmp_path / "tok")
    assert len(trimmed) == len(kept) < len(original)
    before = original(KEPT_TEXT, padding=True, return_tensors="pt")["input_ids"]
    assert torch.equal(torch.tensor(kept)[trimmed(KEPT_TEXT, padding=True, return_tensors="pt")["input_ids"]], before)
    assert "[UNK]" not in trimmed.tokenize(UNCOVERED_TEXT[0]) and set(trimmed.tokenize(UNCOVERED_TEXT[1])) == {"[UNK]"}


def test_whole_scripts_keeps_unseen_letters_of_seen_scripts(tiny_xlmr_dir_shared, tmp_path):
    """ñ and á are not in the English and German corpus, but Latin is: kept by default, unknown without.
    Cyrillic, a script the corpus never uses, stays unknown either way. (The tiny BERT strips accents.)"""
    original = AutoTokenizer.from_pretrained(tiny_xlmr_dir_shared)
    counts = count_pieces(original, KEPT_TEXT)
    for whole_scripts in (True, False):
        trimmed = trim_tokenizer(original, choose_kept_ids(original, counts, whole_scripts=whole_scripts),
                                 tmp_path / str(whole_scripts))
        latin, cyrillic = (trimmed(text, add_special_tokens=False)["input_ids"] for text in ("señor rápido", UNCOVERED_TEXT[1]))
        assert (trimmed.unk_token_id in latin) != whole_scripts
        assert trimmed.unk_token_id in cyrillic


@pytest.mark.parametrize("family", FAMILIES)
def test_min_count_and_keep_top(request, family):
    tok = AutoTokenizer.from_pretrained(request.getfixturevalue(f"tiny_{family}_dir_shared"))
    counts = count_pieces(tok, KEPT_TEXT)
    all_seen = choose_kept_ids(tok, counts)
    assert set(counts) <= set(all_seen)
    assert special_ids(tok) <= set(all_seen)
    frequent = choose_kept_ids(tok, counts, min_count=3)
    assert set(frequent) < set(all_seen)
    assert {i for i, n in counts.items() if n >= 3} <= set(frequent)
    floor = len(choose_kept_ids(tok, counts, min_count=10**9))  # specials and fallback alphabet only
    for keep_top in (floor, floor + 40):
        capped = choose_kept_ids(tok, counts, keep_top=keep_top)
        assert floor <= len(capped) <= keep_top and set(capped) <= set(all_seen)
    if family != "roberta":  # without merge ancestry, a cap keeps exactly the most frequent pieces
        extra = set(choose_kept_ids(tok, counts, keep_top=floor + 40)) - set(choose_kept_ids(tok, counts, keep_top=floor))
        dropped = set(counts) - set(choose_kept_ids(tok, counts, keep_top=floor + 40))
        assert len(extra) == 40 and min(counts[i] for i in extra) >= max(counts[i] for i in dropped)
    assert choose_kept_ids(tok, counts, keep_top=10**6) == all_seen


def test_keep_top_recorded_and_obeyed(tiny_xlmr_dir_shared, tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", KEPT_TEXT)
    result = trim_model_folder(tiny_xlmr_dir_shared, [corpus], tmp_path / "out", min_count=2, keep_top=200)
    assert result.vocab_after <= 200
    assert json.loads((result.out_dir / TRIMMED_VOCAB).read_text())["keep_top"] == 200
    tok, model = _load(result.out_dir)
    with torch.no_grad():
        model(**tok(KEPT_TEXT + UNCOVERED_TEXT, padding=True, return_tensors="pt"))


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_masked_lm_head_is_sliced(tiny_bert_dir_shared, tmp_path, tied):
    """A folder whose config names a head keeps it: output rows and bias are sliced like the embeddings."""
    config = AutoConfig.from_pretrained(tiny_bert_dir_shared, tie_word_embeddings=tied)
    torch.manual_seed(0)
    head = BertForMaskedLM(config).eval()
    with torch.no_grad():
        head.cls.predictions.bias.normal_()
    source = tmp_path / "mlm"
    head.save_pretrained(source)
    AutoTokenizer.from_pretrained(tiny_bert_dir_shared).save_pretrained(source)
    result = trim_model_folder(source, [write_corpus(tmp_path / "c.txt", KEPT_TEXT)], tmp_path / "out")
    trimmed_head = AutoModelForMaskedLM.from_pretrained(result.out_dir).eval()
    assert type(trimmed_head) is BertForMaskedLM
    assert (trimmed_head.get_output_embeddings().weight is trimmed_head.get_input_embeddings().weight) == tied
    tok_before, tok_after = AutoTokenizer.from_pretrained(source), AutoTokenizer.from_pretrained(result.out_dir)
    with torch.no_grad():
        logits_before = head(**tok_before(KEPT_TEXT, padding=True, return_tensors="pt")).logits
        logits_after = trimmed_head(**tok_after(KEPT_TEXT, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(logits_after, logits_before[..., result.kept_ids], atol=1e-5, rtol=0)


def _small(config_cls, vocab_size: int, **extra):
    return config_cls(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=130, **extra)


def _bert_base_layout(folder: Path) -> Path:
    """WordPiece laid out like bert-base ([UNK] [CLS] [SEP] [MASK] at 100..103, built by transformers from vocab.txt)
    and one added token after the vocabulary."""
    pieces = [p for p in bert_vocab(SAMPLE_TEXT) if p not in BERT_SPECIALS]
    vocab = ["[PAD]"] + pieces[:99] + BERT_SPECIALS[1:] + pieces[99:]
    folder.mkdir()
    (folder / "vocab.txt").write_text("".join(f"{p}\n" for p in vocab), encoding="utf-8")
    # From the folder's vocab.txt alone: transformers 4 and 5 both build the fast tokenizer from it (the
    # constructor's vocab_file argument is ignored by transformers 5).
    tokenizer = BertTokenizerFast.from_pretrained(folder, do_lower_case=True)
    tokenizer.add_tokens(["<ent>"], special_tokens=True)  # an added token beyond the model vocabulary
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(_small(BertConfig, len(tokenizer), pad_token_id=0)).save_pretrained(folder)
    return folder


def _xlmr_mask_last_layout(folder: Path) -> Path:
    """Unigram with <mask> as the last piece, as in real XLM-R, and one added token after it."""
    vocab = unigram_vocab(SAMPLE_TEXT)
    vocab = [v for v in vocab if v[0] != "<mask>"] + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    tokenizer.add_tokens(["<ent>"], special_tokens=True)  # an added token beyond the model vocabulary
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    XLMRobertaModel(_small(XLMRobertaConfig, len(tokenizer), pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           type_vocab_size=1)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("layout", [_bert_base_layout, _xlmr_mask_last_layout], ids=["cls-at-101", "mask-last"])
def test_special_ids_far_from_zero_are_renumbered(layout, tmp_path):
    source = layout(tmp_path / "source")
    result = trim_model_folder(source, [write_corpus(tmp_path / "c.txt", KEPT_TEXT)], tmp_path / "out")
    tok_before, model_before = _load(source)
    tok_after, model_after = _load(result.out_dir)
    moved = [name for name in ("cls_token", "sep_token", "mask_token", "unk_token")
             if getattr(tok_after, f"{name}_id") != getattr(tok_before, f"{name}_id")]
    assert moved  # the post-processor's and added tokens' ids really had to change
    assert tok_after.convert_tokens_to_ids("<ent>") == result.vocab_after - 1
    texts = [f"{KEPT_TEXT[0]} {tok_after.mask_token}", f"<ent> {KEPT_TEXT[1]}"]  # <ent>: see the layouts
    before = tok_before(texts, KEPT_TEXT[2:4], padding=True, return_tensors="pt")  # pairs: [CLS] A [SEP] B [SEP]
    after = tok_after(texts, KEPT_TEXT[2:4], padding=True, return_tensors="pt")
    assert torch.equal(torch.tensor(result.kept_ids)[after["input_ids"]], before["input_ids"])
    assert torch.equal(after.get("token_type_ids", after["attention_mask"]), before.get("token_type_ids", before["attention_mask"]))
    with torch.no_grad():
        torch.testing.assert_close(model_after(**after).last_hidden_state, model_before(**before).last_hidden_state,
                                   atol=1e-5, rtol=0)


def test_segmentation_report(trimmed):
    family, source, result = trimmed
    report = segmentation_report(AutoTokenizer.from_pretrained(source), AutoTokenizer.from_pretrained(result.out_dir),
                                 result.kept_ids, {"kept": KEPT_TEXT, "ru": SAMPLE_BY_LANGUAGE["ru"]})
    kept, ru = report["kept"], report["ru"]
    assert kept["texts"] == len(KEPT_TEXT) and kept["tokens"] == kept["tokens_trimmed"] > 0
    assert kept["changed_tokens"] == kept["changed_texts"] == 0 and kept["unk_rate"] == 0
    if family == "roberta":  # the Russian bytes were never merged in this English BPE: nothing changes
        assert ru["changed_token_share"] == 0 and ru["unk_rate"] == 0
    else:
        assert ru["changed_text_share"] == 1 and ru["changed_token_share"] > 0.5 and ru["unk_rate"] > 0.2
        assert ru["unk_rate_original"] == 0


def test_trimmed_folder_exports_to_onnx(trimmed, tmp_path):
    _, _, result = trimmed
    onnx_dir = export_fp32(result.out_dir, tmp_path / "onnx", task="feature-extraction", opset=18)
    tok, model = AutoTokenizer.from_pretrained(onnx_dir), AutoModel.from_pretrained(result.out_dir).eval()
    texts = KEPT_TEXT[:4] + UNCOVERED_TEXT
    enc = tok(texts, padding=True, return_tensors="np")
    session = ort.InferenceSession(str(onnx_dir / "model.onnx"))
    names = {i.name for i in session.get_inputs()}
    onnx_hidden = session.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]
    with torch.no_grad():
        torch_hidden = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state.numpy()
    real = enc["attention_mask"].astype(bool)
    np.testing.assert_allclose(onnx_hidden[real], torch_hidden[real], atol=1e-4)


def test_refusals(tiny_xlmr_dir_shared, tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", KEPT_TEXT)
    with pytest.raises(UserError, match="does not exist"):
        trim_model_folder(tmp_path / "missing", [corpus], tmp_path / "a")
    blank = write_corpus(tmp_path / "blank.txt", ["", "   "])
    with pytest.raises(UserError, match="no usable line"):
        trim_model_folder(tiny_xlmr_dir_shared, [blank], tmp_path / "b")
    with pytest.raises(UserError, match="no corpus"):
        trim_model_folder(tiny_xlmr_dir_shared, [], tmp_path / "c")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        trim_model_folder(tiny_xlmr_dir_shared, [corpus], busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    with pytest.raises(UserError, match="keep_top=3 is smaller"):
        trim_model_folder(tiny_xlmr_dir_shared, [corpus], tmp_path / "d", keep_top=3)
    with pytest.raises(UserError, match="min_count"):
        trim_model_folder(tiny_xlmr_dir_shared, [corpus], tmp_path / "e", min_count=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.txt", "busy", "c.txt"]  # no half-written folder
