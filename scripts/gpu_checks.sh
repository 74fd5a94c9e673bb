#!/usr/bin/env bash
# Issue 12's GPU checks as one script, for a lent GPU machine (docs/benchmarks.md records the results):
#   1. pytest -m gpu
#   2. benchmarks/distill_speed.py at the paper's base shape (12×768 → 6×384, batch 256 × 128, bf16): tokens/s,
#      peak memory, MFU against the measured bf16 matmul rate
#   3. a 300-step distillation on real text from prepared shards (DataLoader path), killed at a checkpoint
#      and resumed, compared bit for bit with an uninterrupted run
# Needs, under ASSETS (default .gpu-assets/, git-ignored: name it in the device tool's `carry`): text/*.txt
# (real text, e.g. chatterbot's per-language files) and tokenizer/ (a fast tokenizer folder, e.g.
# multilingual-e5-small's). Prepare them here with:  scripts/gpu_checks.sh --pack   (from the asset cache, 18 MB)
# Then on the GPU machine:  OUT=$OUT scripts/gpu_checks.sh   (results in $OUT, default gpu-results/)
# DEVICE=cpu STEPS=4 BATCH=8 runs step 3 on a CPU, to try the script (tried: bitwise equal after the kill).
set -euo pipefail
ASSETS=${ASSETS:-.gpu-assets}
OUT=${OUT:-gpu-results}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-300}
BATCH=${BATCH:-256}
PY=${PY:-python}

if [ "${1:-}" = "--pack" ]; then
  mkdir -p "$ASSETS/text" "$ASSETS/tokenizer"
  cp "$(dirname "$(compress assets path chatterbot)")"/*.txt "$ASSETS/text/"
  $PY -c "from transformers import AutoTokenizer; import sys; AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])" \
    "$(compress assets path e5)" "$ASSETS/tokenizer"
  du -sh "$ASSETS"
  exit 0
fi

mkdir -p "$OUT"
export TOKENIZERS_PARALLELISM=false
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"; } | tee "$OUT/device.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/device.txt"

if [ "$DEVICE" = cuda ]; then
  echo "== 1. pytest -m gpu"
  $PY -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/pytest-gpu.txt" || true
  echo "== 2. distillation step, 12x768 -> 6x384, batch 256 x 128, bf16"
  $PY benchmarks/distill_speed.py --device cuda --bf16 --teacher-hidden 768 --batch-size 256 --seq-len 128 \
    --rounds 3 --steps-per-round 3 --json "$OUT/distill_speed.json" 2>&1 | tail -15 | tee "$OUT/distill_speed.txt"
fi

echo "== 3. $STEPS steps on real text from prepared shards, killed and resumed, on $DEVICE"
W=$OUT/work
rm -rf "$W" && mkdir -p "$W"
$PY - "$ASSETS/tokenizer" "$W/teacher" <<'PY'
import sys
from transformers import AutoTokenizer, BertConfig, BertModel
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072)).save_pretrained(sys.argv[2])
tokenizer.save_pretrained(sys.argv[2])
PY
C="$PY -m compress.cli"
$C prepare-data --teacher "$W/teacher" --corpus "$ASSETS/text/*.txt" --out "$W/prepared" --max-length 128
COMMON=(--teacher "$W/teacher" --corpus "$W/prepared" --layers 6 --hidden 384 --heads 12 --batch-size "$BATCH"
        --max-length 128 --steps "$STEPS" --device "$DEVICE" train.checkpoint_every=50 train.log_every=10)
$C distill --run-dir "$W/straight" "${COMMON[@]}" 2> "$W/straight.log" || { tail "$W/straight.log"; exit 1; }
$C distill --run-dir "$W/killed" "${COMMON[@]}" 2> "$W/killed.log" &
PID=$!
while ! [ -f "$W/killed/distill/checkpoint.pt" ]; do sleep 0.2; kill -0 $PID || { tail "$W/killed.log"; exit 1; }; done
sleep 1; kill -9 $PID || true; wait $PID || true
$C distill --run-dir "$W/killed" --resume 2> "$W/resumed.log"
$PY - "$W" "$OUT" <<'PY'
import json, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
w, out = Path(sys.argv[1]), Path(sys.argv[2])
a, b = load_file(w / "straight/student/model.safetensors"), load_file(w / "killed/student/model.safetensors")
equal = all(torch.equal(a[k], b[k]) for k in a)
metrics = [json.loads(l) for l in (w / "straight/distill/metrics.jsonl").read_text().splitlines()]
stage = json.loads((w / "straight/manifest.json").read_text())["stages"]["distill"]
result = {"bitwise_equal_after_kill_and_resume": equal, "tokens_per_s": [m["tokens_per_s"] for m in metrics],
          "final_loss": metrics[-1]["loss"], "wall_s": stage["metrics"]["wall_s"], "device": stage["resolved"]["device"],
          "loader_workers": stage["resolved"]["loader_workers"]}
(out / "resume.json").write_text(json.dumps(result, indent=2))
print(json.dumps(result))
sys.exit(0 if equal else 1)
PY
