#!/usr/bin/env bash
# Run one training recipe end to end: patient-level cross-validation plus the final pair.
#
#   training/recipe.sh PACK OUT_DIR [SCALING ...]
#
# For each scaling scheme (default: uint8/255) this trains, all in parallel:
#   - FOLDS cross-validation pairs on the train+val patients (segmenter, then the
#     classifier from its encoder), each scored on the patients its fold held out;
#   - the final pair on all train+val patients, with the same fixed schedule.
# It then writes OUT_DIR/<scheme>/crossval.json (out-of-fold metrics and the
# classifier threshold chosen on them) and OUT_DIR/<scheme>/{segmenter,classifier}.keras
# (final weights without optimizer state), ready for `python -m training.export`.
# The test patients are not in the pack and play no part.
#
# Meant for a GPU machine (KERAS_BACKEND=jax is fastest); runs anywhere Keras does.
# Environment: FOLDS (4), SEG_EPOCHS (50), CLS_EPOCHS (20), SEG_LR (1e-3), CLS_LR (5e-4),
# BATCH (16), SPLIT (training/splits.json), PYTHON (python3), PARTS (all | folds | final:
# run only the cross-validation or only the final pair, e.g. to fit each into one 10-minute
# GPU call). On one H100 with JAX at 50/20 epochs, batch 32: the 4 folds trained in about
# 8.5 minutes with the final pair beside them; the final pair alone took about 8 minutes;
# the out-of-fold scoring did not fit in that 9-minute call and has not been timed there.
set -euo pipefail
pack=$1 out=$2
shift 2
schemes=("${@:-uint8/255}")
FOLDS=${FOLDS:-4} SEG_EPOCHS=${SEG_EPOCHS:-50} CLS_EPOCHS=${CLS_EPOCHS:-20}
SEG_LR=${SEG_LR:-1e-3} CLS_LR=${CLS_LR:-5e-4} BATCH=${BATCH:-16} PARTS=${PARTS:-all}
SPLIT=${SPLIT:-training/splits.json}
python=${PYTHON:-python3}
mkdir -p "$out"

pair() {  # pair SCHEME DIR [fold args...]
    local scheme=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    "$python" -m training.train --model segmenter --pack "$pack" --split-file "$SPLIT" \
        --train-on train+val "$@" \
        --schedule cosine --epochs "$SEG_EPOCHS" --batch-size "$BATCH" --learning-rate "$SEG_LR" \
        --scaling "$scheme" --run-dir "$dir/segmenter" >"$dir/segmenter.log" 2>&1
    "$python" -m training.train --model classifier --pack "$pack" --split-file "$SPLIT" \
        --train-on train+val "$@" \
        --schedule cosine --epochs "$CLS_EPOCHS" --batch-size "$BATCH" --learning-rate "$CLS_LR" \
        --init-encoder "$dir/segmenter/best.keras" \
        --scaling "$scheme" --run-dir "$dir/classifier" >"$dir/classifier.log" 2>&1
}

pids=()
for scheme in "${schemes[@]}"; do
    tag=${scheme//\//-}
    [[ $PARTS == final ]] || for ((fold = 0; fold < FOLDS; fold++)); do
        (
            pair "$scheme" "$out/$tag/fold$fold" --folds "$FOLDS" --fold "$fold"
            "$python" -m training.crossval predict --pack "$pack" --folds "$FOLDS" --split-file "$SPLIT" \
                --fold "$fold" --runs-dir "$out/$tag/fold$fold" --scaling "$scheme" \
                --out "$out/$tag/fold$fold/rows.json" >>"$out/$tag/fold$fold/classifier.log" 2>&1
        ) &
        pids+=($!)
    done
    [[ $PARTS == folds ]] || (
        pair "$scheme" "$out/$tag/final"
        for model in segmenter classifier; do
            "$python" -c "import sys, keras, brainloc.modeling; \
keras.models.load_model(sys.argv[1], compile=False).save(sys.argv[2])" \
                "$out/$tag/final/$model/best.keras" "$out/$tag/$model.keras"
        done
    ) &
    [[ $PARTS == folds ]] || pids+=($!)
done

status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[[ $PARTS == final ]] || for scheme in "${schemes[@]}"; do
    tag=${scheme//\//-}
    "$python" -m training.crossval summarize "$out/$tag"/fold*/rows.json \
        --json "$out/$tag/crossval.json" >/dev/null || status=1
done
exit $status
