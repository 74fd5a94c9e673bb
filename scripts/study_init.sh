#!/usr/bin/env bash
# Issue 21's study (docs/results.md, "Students cut out of the teacher"): student.init=teacher (structured pruning,
# compress/pruning.py) against student.init=random at equal steps, for students narrower than the teacher.
# Each row: distil, score (language id, bitext, fidelity and the relation KL), then fine-tune on sentiment.
# Rows run most important first, fine-tunes (the slowest part) after the rows are scored; resumable: re-run after an interruption and finished work is kept.
# `python3 scripts/study_init_table.py runs/study-init` prints the tables.
set -euo pipefail
OUT=${OUT:-runs/study-init}
STEPS=${STEPS:-300}
LONG=${LONG:-1500}                   # the random-init row trained longer, to see if it catches up
C=${COMPRESS:-compress}
TASKS=(--task langid --task bitext --task fidelity)
FINETUNE=(--task sentiment-en --epochs 2 --max-train-examples 8000)
RANDOM_INIT="student.init=random student.init_from_teacher_layers=null"
TEACHER_INIT="student.init=teacher student.init_from_teacher_layers=null"   # evenly spaced layers, ending at the last

$C assets build --only e5,minilm,chatterbot,sentiment,langid,bitext >/dev/null
E5=(--config configs/distill/demo-multilingual.yaml --teacher "$($C assets path e5)" --corpus "$($C assets path chatterbot)")
MINILM=(--config configs/distill/quick-english.yaml --teacher "$($C assets path minilm)" --corpus "$($C assets path chatterbot-en)")

done_() { grep -q '"status": "complete"' "$1/manifest.json" 2>/dev/null; }
resume() { [ -f "$1/distill/checkpoint.pt" ] && echo --resume || true; }

# distil NAME STEPS PRESET... -- OVERRIDES...: distil into $OUT/NAME and score it.
distil() {
  local name=$1 steps=$2 R=$OUT/$1; shift 2
  local preset=()
  while [ "$1" != "--" ]; do preset+=("$1"); shift; done; shift
  echo "== $name ($steps steps): $*"
  done_ $R || $C distill "${preset[@]}" --run-dir $R --steps $steps "$@" $(resume $R)
  [ -f $R/eval.json ] || $C evaluate $R "${TASKS[@]}"
}
# finetune NAME: the sentiment fine-tune of a distilled row (the slowest part: after every row is scored).
finetune() {
  local R=$OUT/$1
  [ -d $R/finetune/sentiment-en ] || $C finetune $R "${FINETUNE[@]}" \
    $([ -e $R/finetune/.sentiment-en.work/checkpoint.pt ] && echo --resume)
}

S6x256="student.layers=6 student.hidden=256 student.heads=8"
S4x192="student.layers=4 student.hidden=192 student.heads=6"
S12x192="student.layers=12 student.hidden=192 student.heads=6"
S3x256="student.layers=3 student.hidden=256 student.heads=8"

distil e5-6x256-teacher $STEPS "${E5[@]}" -- $S6x256 $TEACHER_INIT
distil e5-6x256-random $STEPS "${E5[@]}" -- $S6x256 $RANDOM_INIT
distil e5-4x192-teacher $STEPS "${E5[@]}" -- $S4x192 $TEACHER_INIT
distil e5-4x192-random $STEPS "${E5[@]}" -- $S4x192 $RANDOM_INIT
distil minilm-3x256-teacher $STEPS "${MINILM[@]}" -- $S3x256 $TEACHER_INIT
distil minilm-3x256-random $STEPS "${MINILM[@]}" -- $S3x256 $RANDOM_INIT
# The criterion: weight norms instead of activations on 256 calibration sequences.
distil e5-6x256-teacher-magnitude $STEPS "${E5[@]}" -- $S6x256 $TEACHER_INIT student.prune_criterion=magnitude
# What pruning alone gives: the cut-out student before any distillation.
distil e5-6x256-teacher-0 0 "${E5[@]}" -- $S6x256 $TEACHER_INIT
# Does random init catch up with five times the steps?
distil e5-6x256-random-$LONG $LONG "${E5[@]}" -- $S6x256 $RANDOM_INIT
for name in e5-6x256-teacher e5-6x256-random e5-4x192-teacher e5-4x192-random minilm-3x256-teacher minilm-3x256-random; do
  finetune $name
done
# Width alone: all twelve layers kept, half the channels.
distil e5-12x192-teacher $STEPS "${E5[@]}" -- $S12x192 $TEACHER_INIT
distil e5-12x192-random $STEPS "${E5[@]}" -- $S12x192 $RANDOM_INIT
for name in e5-6x256-random-$LONG e5-6x256-teacher-magnitude e5-12x192-teacher e5-12x192-random; do
  finetune $name
done
# The step-0 cut-out student scores higher on bitext and fidelity than after 300 steps at the preset's lr (6e-4):
# does a gentler lr keep what pruning gave?
distil e5-6x256-teacher-lr1e-4 $STEPS "${E5[@]}" -- $S6x256 $TEACHER_INIT train.lr=1e-4
finetune e5-6x256-teacher-lr1e-4
