"""relation-compress: MiniLMv2 relation distillation, its run folder, data path and training loop."""

import logging


class _SpuriousMistralRegexWarning(logging.Filter):
    """transformers 4.57.3–4.57.x warns "incorrect regex pattern ... set fix_mistral_regex=True" for every local
    tokenizer folder saved by those versions, whatever its model type (its check treats any such config as
    Mistral's). The fix it suggests swaps in Mistral's pre-tokenizer regex; our encoders' tokenizers (BERT's
    WordPiece, XLM-R's Metaspace) have no such regex, so following the advice would break them. Dropped
    here for every user of the library, not just the CLI (tests/test_tiny_models.py checks both facts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "fix_mistral_regex" not in record.getMessage()


logging.getLogger("transformers.tokenization_utils_base").addFilter(_SpuriousMistralRegexWarning())
