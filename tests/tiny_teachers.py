"""Tiny random BERT, RoBERTa and XLM-R teachers with real tokenizers, saved like any HF model folder.

Each builder trains a small tokenizer of the family's kind (WordPiece, byte-level BPE, Unigram) on
SAMPLE_TEXT with the ``tokenizers`` library, wraps it in the family's fast tokenizer class and saves model
and tokenizer with ``save_pretrained``, so tests load them through ``from_pretrained(path)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig, BertModel, BertTokenizerFast, RobertaConfig, RobertaModel, RobertaTokenizerFast,
    XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast,
)

SAMPLE_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "A small model can learn a lot from a large one.",
    "Distillation transfers the knowledge of a teacher to a student.",
    "Self-attention relations are what the student imitates.",
    "How are you today? I am fine, thank you.",
    "What time is it? It is late in the evening.",
    "Please open the window, it is warm in here.",
    "The weather is nice and the sky is blue.",
    "I would like a cup of coffee with milk.",
    "Where is the nearest train station?",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Ein kleines Modell kann viel von einem großen lernen.",
    "Wie geht es dir heute? Mir geht es gut, danke.",
    "Das Wetter ist schön und der Himmel ist blau.",
    "Ich hätte gern eine Tasse Kaffee mit Milch.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "Un modelo pequeño puede aprender mucho de uno grande.",
    "¿Cómo estás hoy? Estoy bien, gracias.",
    "El tiempo es agradable y el cielo es azul.",
    "Quisiera una taza de café con leche.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Маленькая модель может многому научиться у большой.",
    "Как дела сегодня? Хорошо, спасибо.",
    "Погода хорошая, и небо голубое.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "小模型可以从大模型中学到很多。",
    "你今天好吗？我很好，谢谢。",
    "天气很好，天空是蓝色的。",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Comment allez-vous aujourd'hui ? Très bien, merci.",
    "Il fait beau et le ciel est bleu.",
    "Un petit modèle peut beaucoup apprendre d'un grand.",
    "Students are smaller, faster and cheaper to run.",
    "Quantization turns floating point weights into integers.",
    "The benchmark measures latency and throughput.",
    "Every layer has queries, keys and values.",
    "Relations are softmax of scaled dot products.",
    "Long sentences are truncated to the maximum length that the model accepts in one go.",
    "Short one.",
    "Yes.",
]

SPECIAL_BERT = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPECIAL_ROBERTA = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4: pad is 1, as in RoBERTa and XLM-R
ROBERTA_TOKENS = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                      pad_token="<pad>", mask_token="<mask>", model_max_length=126)


def _model_kwargs(layers: int, hidden: int, heads: int, vocab: int, max_len: int) -> dict:
    return dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                intermediate_size=4 * hidden, max_position_embeddings=max_len, hidden_dropout_prob=0.1,
                attention_probs_dropout_prob=0.1)


def _save(model, tokenizer, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_tiny_bert(path: Path, *, layers: int = 4, hidden: int = 64, heads: int = 4, seed: int = 0) -> Path:
    """BertModel + WordPiece tokenizer (lower-cased, accents kept)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(SAMPLE_TEXT, trainers.WordPieceTrainer(vocab_size=600, special_tokens=SPECIAL_BERT))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    tokenizer = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    torch.manual_seed(seed)
    config = BertConfig(**_model_kwargs(layers, hidden, heads, tok.get_vocab_size(), 128),
                        pad_token_id=tok.token_to_id("[PAD]"))
    return _save(BertModel(config), tokenizer, path)


def make_tiny_roberta(path: Path, *, layers: int = 4, hidden: int = 64, heads: int = 4, seed: int = 0) -> Path:
    """RobertaModel + byte-level BPE tokenizer (positions start after the padding id, as in RoBERTa)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(SAMPLE_TEXT, trainers.BpeTrainer(
        vocab_size=800, special_tokens=SPECIAL_ROBERTA, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = RobertaTokenizerFast(tokenizer_object=tok, **ROBERTA_TOKENS)
    torch.manual_seed(seed)
    config = RobertaConfig(**_model_kwargs(layers, hidden, heads, tok.get_vocab_size(), 128), pad_token_id=1,
                           bos_token_id=0, eos_token_id=2)
    return _save(RobertaModel(config), tokenizer, path)


def make_tiny_xlmr(path: Path, *, layers: int = 4, hidden: int = 64, heads: int = 4, seed: int = 0) -> Path:
    """XLMRobertaModel + sentencepiece-style Unigram tokenizer (Metaspace pre-tokenisation)."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(SAMPLE_TEXT, trainers.UnigramTrainer(
        vocab_size=700, special_tokens=SPECIAL_ROBERTA, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.decoder = decoders.Metaspace()
    tokenizer = XLMRobertaTokenizerFast(tokenizer_object=tok, **ROBERTA_TOKENS)
    torch.manual_seed(seed)
    config = XLMRobertaConfig(**_model_kwargs(layers, hidden, heads, tok.get_vocab_size(), 128), pad_token_id=1,
                              bos_token_id=0, eos_token_id=2)
    return _save(XLMRobertaModel(config), tokenizer, path)


BUILDERS = {"bert": make_tiny_bert, "roberta": make_tiny_roberta, "xlmr": make_tiny_xlmr}


def write_corpus(path: Path, lines=SAMPLE_TEXT) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
