#!/usr/bin/env bash
# Scores the runs of `scripts/study_distill.sh` (docs/results.md) and prints the results table.
# Resumable: finished scores (eval.json) and fine-tunes are reused.
set -euo pipefail
OUT=${OUT:-runs/study}
STEPS=${STEPS:-300}
C=${COMPRESS:-compress}
PRESET=configs/distill/demo-multilingual.yaml
TASKS=(--task langid --task bitext --task fidelity)
FINETUNE=(--task sentiment-en --epochs 2 --max-train-examples 8000)

$C assets build --only e5,chatterbot,sentiment,langid,bitext >/dev/null
# The layer sweep: its distillations are already done by study_distill.sh (same config), so this scores them.
$C sweep-layers --config $PRESET --teacher "$($C assets path e5)" --corpus "$($C assets path chatterbot)" \
  --run-dir $OUT/sweep --teacher-layers 8,10,12 --steps $STEPS "${TASKS[@]}" student.init=random student.init_from_teacher_layers=null
for R in hidden-mse init-every-other init-every-other-relations; do
  $C evaluate $OUT/$R "${TASKS[@]}"
done
for R in sweep/layer-12 hidden-mse init-every-other init-every-other-relations; do
  [ -d $OUT/$R/finetune/sentiment-en ] || $C finetune $OUT/$R "${FINETUNE[@]}" \
    $([ -e $OUT/$R/finetune/.sentiment-en.work/checkpoint.pt ] && echo --resume)
done
[ -d $OUT/sweep/layer-12/finetune/sentiment-en-teacher ] || $C finetune $OUT/sweep/layer-12 "${FINETUNE[@]}" --model teacher \
  $([ -e $OUT/sweep/layer-12/finetune/.sentiment-en-teacher.work/checkpoint.pt ] && echo --resume)
python3 scripts/study_table.py $OUT
