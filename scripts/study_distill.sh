#!/usr/bin/env bash
# The distillations of the small-scale reproduction (docs/results.md), at equal training compute:
# MiniLMv2 relation distillation from teacher layers 8/10/12 (the layer sweep; layer 12 is the main
# student), a hidden-state MSE baseline, a student initialised from every other teacher layer with
# no distillation, and the same initialisation followed by relation distillation. `scripts/study_evaluate.sh` scores them. Resumable: re-run after an interruption.
set -euo pipefail
OUT=${OUT:-runs/study}
STEPS=${STEPS:-300}
COMPRESS=${COMPRESS:-compress}
T=$($COMPRESS assets path e5)
C=$($COMPRESS assets path chatterbot)
PRESET=configs/distill/demo-multilingual.yaml
RANDOM_INIT="student.init=random student.init_from_teacher_layers=null"   # the preset now starts from copied layers; the study's rows did not
resume() { [ -f "$1/distill/checkpoint.pt" ] && echo --resume || true; }
done_() { grep -q '"status": "complete"' "$1/manifest.json" 2>/dev/null; }

for L in 12 10 8; do
  R=$OUT/sweep/layer-$L
  done_ $R || $COMPRESS distill --config $PRESET --teacher "$T" --corpus "$C" --run-dir $R --steps $STEPS --teacher-layer $L $RANDOM_INIT $(resume $R)
done
R=$OUT/hidden-mse
done_ $R || $COMPRESS distill --config $PRESET --teacher "$T" --corpus "$C" --run-dir $R --steps $STEPS loss.objective=hidden_mse $RANDOM_INIT $(resume $R)
R=$OUT/init-every-other
done_ $R || $COMPRESS distill --config $PRESET --teacher "$T" --corpus "$C" --run-dir $R --steps 0 "student.init_from_teacher_layers=[2,4,6,8,10,12]"
R=$OUT/init-every-other-relations
done_ $R || $COMPRESS distill --config $PRESET --teacher "$T" --corpus "$C" --run-dir $R --steps $STEPS \
  "student.init_from_teacher_layers=[2,4,6,8,10,12]" $(resume $R)
