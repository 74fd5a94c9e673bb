#!/usr/bin/env bash
# The main job end to end on the offline assets: distill → finetune → export (ONNX Runtime and OpenVINO: FP32,
# bf16, INT8, INT8 after QAT) → bench.
#   scripts/pipeline.sh demo  [RUN]   multilingual-e5-small → 6×384 student (17–22 min on 2 vCPUs)
#   scripts/pipeline.sh quick [RUN]   all-MiniLM-L6-v2 → 3×384 English student (under 5 min)
# Every step is skipped when its output is complete and resumed when it was interrupted, so running the
# script again after Ctrl-C continues where it stopped. COMPRESS=path/to/compress overrides the command.
set -euo pipefail
MODE=${1:-demo}
C=${COMPRESS:-compress}
case $MODE in
  demo)
    RUN=${2:-runs/demo}; PRESET=configs/distill/demo-multilingual.yaml; TEACHER=e5; CORPUS=chatterbot
    TASKS=(--task sentiment-en --task langid --task bitext --task fidelity)
    FINETUNE=(--epochs 2 --max-train-examples 4000); QAT_STEPS=50; EVAL=1000
    SHAPES=(--batch-sizes 1,8 --seq-lengths 32,128 --min-time 0.5) ;;
  quick)
    RUN=${2:-runs/quick}; PRESET=configs/distill/quick-english.yaml; TEACHER=minilm; CORPUS=chatterbot-en
    TASKS=(--task sentiment-en --task fidelity)
    FINETUNE=(--epochs 1 --max-train-examples 2000); QAT_STEPS=30; EVAL=500
    SHAPES=(--batch-sizes 1,8 --seq-lengths 128 --min-time 0.3) ;;
  *) echo "usage: $0 demo|quick [RUN_DIR]" >&2; exit 2 ;;
esac

stage_done() {  # stage_done NAME: the run's manifest records stage NAME as complete
  python3 -c "import json,sys; s=json.load(open('$RUN/manifest.json'))['stages'].get('$1',{}); sys.exit(s.get('status')!='complete')" 2>/dev/null
}
resume_if() {  # resume_if PATH...: --resume when any of them exists
  for path in "$@"; do [ -e "$path" ] && { echo --resume; return; }; done; true
}

echo "== assets"
$C assets build --only "$TEACHER,chatterbot,sentiment,langid,bitext" >/dev/null
echo "== 1/4 distill"
stage_done distill || $C distill --config $PRESET --teacher "$($C assets path $TEACHER)" \
  --corpus "$($C assets path $CORPUS)" --run-dir "$RUN" $(resume_if "$RUN/distill/checkpoint.pt")
echo "== 2/4 finetune (sentiment-en)"
[ -d "$RUN/finetune/sentiment-en" ] || $C finetune "$RUN" --task sentiment-en "${FINETUNE[@]}" \
  $(resume_if "$RUN/finetune/.sentiment-en.work/checkpoint.pt")
echo "== 3/4 export"
# QAT for OpenVINO only: it lifts NNCF's INT8 measurably; ORT's dynamic INT8 did not gain from it on this student
# (docs/benchmarks.md), and each retraining costs minutes.
stage_done export || $C export "$RUN" --int8 --runtime all --qat-runtime openvino --qat-steps $QAT_STEPS \
  $(resume_if "$RUN/export/qat/checkpoint.pt" "$RUN/export/qat-openvino/checkpoint.pt")
stage_done export/sentiment-en || $C export "$RUN" --model sentiment-en --int8
stage_done export/teacher || $C export "$RUN" --model teacher
echo "== 4/4 bench"
$C bench "$RUN" "${TASKS[@]}" "${SHAPES[@]}" max_eval_examples=$EVAL
