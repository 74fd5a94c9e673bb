"""The tiny teachers load through the Auto classes, tokenise the sample text and are deterministic."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoTokenizer

from reference.tiny_models import BUILDERS, SAMPLE_TEXT

MODEL_TYPES = {"bert": "bert", "roberta": "roberta", "xlmr": "xlm-roberta"}


def _family(request) -> str:
    return request.node.callspec.params["tiny_teacher_dir_shared"]


def test_loads_through_auto_classes(tiny_teacher_dir_shared, request):
    config = AutoConfig.from_pretrained(tiny_teacher_dir_shared)
    model = AutoModel.from_pretrained(tiny_teacher_dir_shared)
    tok = AutoTokenizer.from_pretrained(tiny_teacher_dir_shared)
    assert config.model_type == MODEL_TYPES[_family(request)]
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (4, 64, 4)
    assert config.intermediate_size == 4 * config.hidden_size
    assert 200 <= config.vocab_size <= 1000 and len(tok) == config.vocab_size
    assert tok.pad_token_id == config.pad_token_id and tok.is_fast
    assert tok.model_max_length >= 64
    offset = 0 if config.model_type == "bert" else 2  # RoBERTa positions start after the padding id
    assert config.max_position_embeddings == tok.model_max_length + offset
    assert model.embeddings.word_embeddings.num_embeddings == config.vocab_size


def test_sample_text_is_mostly_known_pieces(tiny_teacher_dir_shared):
    tok = AutoTokenizer.from_pretrained(tiny_teacher_dir_shared)
    ids = [i for line in tok(SAMPLE_TEXT, add_special_tokens=False)["input_ids"] for i in line]
    assert len(ids) > len(SAMPLE_TEXT) * 5
    assert sum(i == tok.unk_token_id for i in ids) / len(ids) < 0.05
    assert tok.decode(tok("hello world")["input_ids"], skip_special_tokens=True).strip() == "hello world"


def test_padded_batch_forward(tiny_teacher_dir_shared):
    tok = AutoTokenizer.from_pretrained(tiny_teacher_dir_shared)
    model = AutoModel.from_pretrained(tiny_teacher_dir_shared).eval()
    lines = ["Yes.", "Wie geht es dir heute? Mir geht es gut, danke.", " ".join(SAMPLE_TEXT)]
    batch = tok(lines, padding=True, truncation=True, return_tensors="pt")
    lengths = batch["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == 3 and batch["input_ids"].shape[1] == tok.model_max_length  # truncated
    assert (batch["input_ids"][0, lengths[0]:] == tok.pad_token_id).all()
    with torch.no_grad():
        out = model(**batch).last_hidden_state
        alone = model(**tok(lines[:1], return_tensors="pt")).last_hidden_state
    assert out.shape == (3, batch["input_ids"].shape[1], model.config.hidden_size)
    torch.testing.assert_close(out[0, :lengths[0]], alone[0])  # padding changes nothing for the real tokens


@pytest.mark.parametrize("family", BUILDERS)
def test_same_seed_same_model(family, tmp_path):
    build = BUILDERS[family]
    rng = torch.get_rng_state()
    a, b, c = build(tmp_path / "a"), build(tmp_path / "b"), build(tmp_path / "c", seed=1)
    assert torch.equal(torch.get_rng_state(), rng)  # building leaves the global RNG alone
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert json.loads((a / "tokenizer.json").read_text()) == json.loads((b / "tokenizer.json").read_text())


def test_per_test_copies_are_private(tiny_bert_dir, tiny_bert_dir_shared, corpus_file):
    assert tiny_bert_dir != tiny_bert_dir_shared
    assert sorted(p.name for p in tiny_bert_dir.iterdir()) == sorted(p.name for p in tiny_bert_dir_shared.iterdir())
    (tiny_bert_dir / "model.safetensors").write_bytes(b"corrupt")
    assert (tiny_bert_dir_shared / "model.safetensors").stat().st_size > 1000
    assert corpus_file.read_text(encoding="utf-8").splitlines() == SAMPLE_TEXT


def test_the_spurious_mistral_regex_warning_is_dropped_and_its_advice_does_not_apply(tmp_path):
    """transformers 4.57.3+ warns "incorrect regex pattern ... fix_mistral_regex=True" on loading any local folder it
    saved whose tokenizer has more than 100k pieces (multilingual-e5's 250k XLM-R vocabulary; compress/__init__.py).
    Its premise is false for such tokenizers (no regex pre-tokenizer to fix), and a process that imports compress
    never shows it."""
    import subprocess
    import sys

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, XLMRobertaTokenizerFast

    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"\u2581w{i}", -1.0 - i / 1e5) for i in range(100_050)] + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    folder = tmp_path / "e5-like"
    XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
                            unk_token="<unk>", pad_token="<pad>", mask_token="<mask>").save_pretrained(folder)
    BertConfig(vocab_size=len(pieces)).save_pretrained(folder)
    pre = json.loads((folder / "tokenizer.json").read_text())["pre_tokenizer"]
    kinds = [p["type"] for p in pre.get("pretokenizers", [pre])]
    assert "Split" not in kinds, kinds  # no regex pre-tokenizer (Metaspace): nothing the "fix" would correct
    load = "from transformers import AutoTokenizer\nAutoTokenizer.from_pretrained(sys.argv[1])\n"
    shown = {}
    for first in ("", "import compress\n"):
        result = subprocess.run([sys.executable, "-c", "import sys\n" + first + load, str(folder)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        shown[bool(first)] = "fix_mistral_regex" in result.stderr
    assert not shown[True]
    import transformers

    if transformers.__version__.startswith("4.57.") and int(transformers.__version__.split(".")[2]) >= 3:
        assert shown[False]  # the versions with the faulty check do warn without the filter
