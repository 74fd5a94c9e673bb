"""Tiny random BERT, RoBERTa and XLM-R teachers with real tokenizers, built locally and saved like any HF folder.

Each ``make_tiny_*`` writes model and tokenizer with ``save_pretrained``, so tests load them through the real
``AutoModel.from_pretrained(path)`` / ``AutoTokenizer.from_pretrained(path)`` path, offline.

Every tokenizer pipeline (normalizer, pre-tokenizer, post-processor) is the one its transformers class builds
itself: transformers 5 rebuilds the pipeline from the class and takes only the vocabulary from tokenizer.json,
transformers 4 uses tokenizer.json as written, and both must tokenise alike.

Special-token ids (do not hard-code the ids of real checkpoints):
  BERT:           [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4   (real bert-base: 0, 100, 101, 102, 103)
  RoBERTa, XLM-R: <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4      (real XLM-R has <mask> last)
"""

from __future__ import annotations

import math
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig, BertModel, BertTokenizerFast, RobertaConfig, RobertaModel, RobertaTokenizerFast,
    XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast,
)

SAMPLE_BY_LANGUAGE: dict[str, list[str]] = {
    "en": [
        "The quick brown fox jumps over the lazy dog.",
        "A small model can learn a lot from a large one.",
        "Distillation transfers the knowledge of a teacher to a student.",
        "Self-attention relations are what the student imitates.",
        "How are you today? I am fine, thank you.",
        "What time is it? It is half past seven in the evening.",
        "Please open the window, it is warm in here.",
        "The weather is nice and the sky is blue.",
        "I would like a cup of coffee with milk and two sugars.",
        "Where is the nearest train station?",
        "Students are smaller, faster and cheaper to run.",
        "Quantization turns 32-bit floating point weights into 8-bit integers.",
        "The benchmark measures latency (ms) and throughput (sentences/s).",
        "Every layer has queries, keys and values.",
        "Relations are the softmax of scaled dot products.",
        "She bought 3 apples, 12 eggs and a loaf of bread for $7.50.",
        "Don't worry, we'll finish the report by Friday!",
        "The meeting was moved from room 101 to room 204.",
        "Machine learning models need data, compute and patience.",
        "My favourite books are about history, science and travel.",
        "Short one.",
        "Yes.",
        "Long sentences are truncated to the maximum length that the model accepts in one go, so this line "
        "goes on and on about nothing in particular: the river, the mountains, the old town with its narrow "
        "streets, the market on Saturday morning, the bakery that opens at six, the bus that is always late, "
        "and the people who wait for it while they read the news on their phones.",
    ],
    "de": [
        "Der schnelle braune Fuchs springt über den faulen Hund.",
        "Ein kleines Modell kann viel von einem großen lernen.",
        "Wie geht es dir heute? Mir geht es gut, danke.",
        "Das Wetter ist schön und der Himmel ist blau.",
        "Ich hätte gern eine Tasse Kaffee mit Milch.",
        "Wo ist der nächste Bahnhof?",
        "Die Schüler lesen jeden Morgen die Zeitung.",
        "Im Winter ist es draußen kalt und dunkel.",
    ],
    "es": [
        "El rápido zorro marrón salta sobre el perro perezoso.",
        "Un modelo pequeño puede aprender mucho de uno grande.",
        "¿Cómo estás hoy? Estoy bien, gracias.",
        "El tiempo es agradable y el cielo es azul.",
        "Quisiera una taza de café con leche.",
        "¿Dónde está la estación de tren más cercana?",
        "Mañana vamos a la playa con nuestros amigos.",
        "La biblioteca abre a las nueve de la mañana.",
    ],
    "ru": [
        "Быстрая коричневая лиса прыгает через ленивую собаку.",
        "Маленькая модель может многому научиться у большой.",
        "Как дела сегодня? Хорошо, спасибо.",
        "Погода хорошая, и небо голубое.",
        "Я хотел бы чашку кофе с молоком.",
        "Где находится ближайшая станция?",
        "Студенты читают книги в библиотеке.",
        "Зимой на улице холодно и темно.",
    ],
    "zh": [
        "敏捷的棕色狐狸跳过了懒狗。",
        "小模型可以从大模型中学到很多。",
        "你今天好吗？我很好，谢谢。",
        "天气很好，天空是蓝色的。",
        "我想要一杯加牛奶的咖啡。",
        "最近的火车站在哪里？",
        "学生们在图书馆里看书。",
        "冬天外面又冷又黑。",
    ],
    "fr": [
        "Le renard brun rapide saute par-dessus le chien paresseux.",
        "Comment allez-vous aujourd'hui ? Très bien, merci.",
        "Il fait beau et le ciel est bleu.",
        "Un petit modèle peut beaucoup apprendre d'un grand.",
    ],
}
SAMPLE_TEXT: list[str] = [line for lines in SAMPLE_BY_LANGUAGE.values() for line in lines]
ENGLISH_TEXT: list[str] = SAMPLE_BY_LANGUAGE["en"]

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
_ROBERTA_TOKENS = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                       pad_token="<pad>", mask_token="<mask>")
# A fixed core every BERT vocabulary gets, whatever vocab_text is.
_COMMON_WORDS = """the of and to a in is it you that he was for on are with as i his they be at one have this from
or had by not but what all were we when your can said there use an each which she do how their if will up other
about out many then them these so some her would make like him into time has look two more write go see number no
way could people my than first water been call who oil its now find long down day did get come made may part""".split()
_SUFFIXES = ["##s", "##es", "##ed", "##ing", "##er", "##est", "##ly", "##tion", "##ment", "##ness", "##en", "##e"]


def write_corpus(path: str | Path, lines: Iterable[str] = SAMPLE_TEXT) -> Path:
    """Write ``lines`` one per line (UTF-8) and return the path."""
    path = Path(path)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def _model_kwargs(layers: int, hidden: int, heads: int, vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                intermediate_size=4 * hidden)


def _save(path: str | Path, config_cls, model_cls, config_kwargs: dict, tokenizer, seed: int) -> Path:
    """Initialise the model under a private RNG seeded with ``seed`` and save model and tokenizer."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
        torch.manual_seed(seed)
        model = model_cls(config_cls(**config_kwargs)).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ---------------------------------------------------------------- BERT: WordPiece from a written vocab.txt


def bert_vocab(vocab_text: Iterable[str] = SAMPLE_TEXT, vocab_size: int = 600) -> list[str]:
    """Specials, every character of ``vocab_text`` (and its ``##`` form), common words, then its most frequent words.

    Words are cut the way BertTokenizer cuts them (lower-cased, accents stripped, CJK split per character), so every
    character of ``vocab_text`` is a piece and no word made of those characters becomes [UNK].
    """
    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None, handle_chinese_chars=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words = Counter(w for line in vocab_text for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(line)))
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation).union(*words))
    vocab = BERT_SPECIALS + chars + [f"##{c}" for c in chars if c.isalnum()] + _SUFFIXES + _COMMON_WORDS
    frequent = sorted((w for w in words if len(w) > 1), key=lambda w: (-words[w], w))
    vocab += frequent
    return list(dict.fromkeys(vocab))[:max(vocab_size, len(BERT_SPECIALS) + 2 * len(chars))]


def make_tiny_bert(path: str | Path, *, layers: int = 4, hidden: int = 64, heads: int = 4, max_len: int = 128,
                   seed: int = 0, vocab_text: Iterable[str] = SAMPLE_TEXT, vocab_size: int = 600) -> Path:
    """Random BertModel + uncased WordPiece BertTokenizerFast (vocab.txt written from ``vocab_text``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = bert_vocab(vocab_text, vocab_size)
    (path / "vocab.txt").write_text("".join(f"{piece}\n" for piece in vocab), encoding="utf-8")
    tok = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))])
    tok.decoder = decoders.WordPiece(prefix="##")
    tokenizer = BertTokenizerFast(tokenizer_object=tok, do_lower_case=True, strip_accents=None,
                                  tokenize_chinese_chars=True, unk_token="[UNK]", sep_token="[SEP]",
                                  pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]", model_max_length=max_len)
    config = dict(_model_kwargs(layers, hidden, heads, len(vocab)), max_position_embeddings=max_len, pad_token_id=0)
    return _save(path, BertConfig, BertModel, config, tokenizer, seed)


# ---------------------------------------------------------------- RoBERTa: byte-level BPE


def make_tiny_roberta(path: str | Path, *, layers: int = 4, hidden: int = 64, heads: int = 4, max_len: int = 128,
                      seed: int = 0, vocab_text: Iterable[str] = ENGLISH_TEXT, vocab_size: int = 600) -> Path:
    """Random RobertaModel + byte-level BPE RobertaTokenizerFast trained on ``vocab_text`` (never yields <unk>).

    Positions start after the padding id (pad_token_id=1), so max_position_embeddings = max_len + 2.
    """
    tok = Tokenizer(models.BPE(dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(vocab_text), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=ROBERTA_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    tokenizer = RobertaTokenizerFast(tokenizer_object=tok, add_prefix_space=False, trim_offsets=True,
                                     model_max_length=max_len, **_ROBERTA_TOKENS)
    config = dict(_model_kwargs(layers, hidden, heads, tok.get_vocab_size()), max_position_embeddings=max_len + 2,
                  type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    return _save(path, RobertaConfig, RobertaModel, config, tokenizer, seed)


# ---------------------------------------------------------------- XLM-R: sentencepiece-style Unigram


_XLMR_SPLIT = pre_tokenizers.Sequence([
    pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])


def unigram_vocab(vocab_text: Iterable[str] = SAMPLE_TEXT, vocab_size: int = 800, *, max_piece_len: int = 6,
                  rounds: int = 3) -> list[tuple[str, float]]:
    """A deterministic sentencepiece-style Unigram vocabulary: specials first, then (piece, log-prob) best first.

    Seeds every character and the frequent substrings of the words of ``vocab_text``, then re-estimates the
    scores from the pieces that ``tokenizers``' Unigram Viterbi actually uses and prunes the rest. Written out
    because ``UnigramTrainer`` gives slightly different scores from run to run (and between versions).
    """
    words = Counter(w for line in vocab_text for w, _ in _XLMR_SPLIT.pre_tokenize_str(line))
    counts: Counter[str] = Counter()
    for word, n in words.items():
        for i in range(len(word)):
            for j in range(i + 1, min(len(word), i + max_piece_len) + 1):
                counts[word[i:j]] += n
    chars = sorted(p for p in counts if len(p) == 1)
    seeds = [p for p in counts if len(p) > 1 and (counts[p] > 1 or p in words)]  # repeated substrings, whole words
    seeds.sort(key=lambda p: (-counts[p] * len(p), p))
    pieces, room = chars + seeds[:2 * vocab_size], max(vocab_size - len(ROBERTA_SPECIALS) - len(chars), 0)
    specials = [(s, 0.0) for s in ROBERTA_SPECIALS]
    for _ in range(rounds):
        total = sum(counts[p] for p in pieces)
        model = models.Unigram(specials + [(p, math.log(counts[p] / total)) for p in pieces], unk_id=3)
        used = Counter()
        for word, n in sorted(words.items()):
            for token in model.tokenize(word):
                used[token.value] += n
        longer = sorted((p for p in pieces if len(p) > 1 and used[p]), key=lambda p: (-used[p], p))
        pieces = chars + longer[:room]
        counts = Counter({p: used[p] + 1 for p in pieces})  # +1 keeps unused characters
    total = sum(counts.values())
    scored = sorted(((p, math.log(counts[p] / total)) for p in pieces), key=lambda ps: (-ps[1], ps[0]))
    return specials + scored


def make_tiny_xlmr(path: str | Path, *, layers: int = 4, hidden: int = 64, heads: int = 4, max_len: int = 128,
                   seed: int = 0, vocab_text: Iterable[str] = SAMPLE_TEXT, vocab_size: int = 800) -> Path:
    """Random XLMRobertaModel + sentencepiece-style Unigram XLMRobertaTokenizerFast for multilingual ``vocab_text``.

    Cased, no normalizer (XLMRobertaTokenizer's own pipeline without a sentencepiece charsmap); characters absent
    from ``vocab_text`` become <unk>. max_position_embeddings = max_len + 2, as for RoBERTa.
    """
    tok = Tokenizer(models.Unigram(unigram_vocab(vocab_text, vocab_size), unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = _XLMR_SPLIT
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = XLMRobertaTokenizerFast(tokenizer_object=tok, add_prefix_space=True, model_max_length=max_len,
                                        **_ROBERTA_TOKENS)
    config = dict(_model_kwargs(layers, hidden, heads, tok.get_vocab_size()), max_position_embeddings=max_len + 2,
                  type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    return _save(path, XLMRobertaConfig, XLMRobertaModel, config, tokenizer, seed)


BUILDERS = {"bert": make_tiny_bert, "roberta": make_tiny_roberta, "xlmr": make_tiny_xlmr}
