#!/usr/bin/env bash
# bf16 autocast on a CPU with native bf16 (AVX-512 BF16 / AMX) against fp32, at equal steps (docs/benchmarks.md):
# the demo preset distilled twice, then both students scored on langid, bitext and fidelity, and the two
# loss curves printed side by side. Resumable: re-run after an interruption.
set -euo pipefail
OUT=${OUT:-runs/study-bf16}
STEPS=${STEPS:-400}
C=${COMPRESS:-compress}
PRESET=configs/distill/demo-multilingual.yaml
$C assets build --only e5,chatterbot,langid,bitext >/dev/null
T=$($C assets path e5); X=$($C assets path chatterbot)
for P in fp32 bf16; do
  R=$OUT/$P
  grep -q '"status": "complete"' $R/manifest.json 2>/dev/null || $C distill --config $PRESET --teacher "$T" --corpus "$X" \
    --run-dir $R --steps $STEPS --device cpu train.precision=$P train.log_every=20 \
    $([ -f $R/distill/checkpoint.pt ] && echo --resume)
  [ -f $R/eval.json ] || $C evaluate $R --task langid --task bitext --task fidelity
done
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = {p: [json.loads(l) for l in (out / p / "distill" / "metrics.jsonl").read_text().splitlines()] for p in ("fp32", "bf16")}
print("| step | loss fp32 | loss bf16 | tokens/s fp32 | tokens/s bf16 |\n|---:|---:|---:|---:|---:|")
for a, b in zip(runs["fp32"], runs["bf16"]):
    print(f"| {a['step']} | {a['loss']:.4f} | {b['loss']:.4f} | {a['tokens_per_s']:,.0f} | {b['tokens_per_s']:,.0f} |")
for p in ("fp32", "bf16"):
    print(p, json.dumps(json.loads((out / p / "eval.json").read_text())["summary"] if "summary" in json.loads((out / p / "eval.json").read_text()) else json.loads((out / p / "eval.json").read_text()))[:600])
PY
