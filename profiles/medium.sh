#!/usr/bin/env bash
# Medium profile: about 1.5 hours on 2 CPU cores, end to end; the agent drives most tracks well
# (see the README's Results). The small profile's data and V, with a wider, less noisy search:
# 32 candidates x 4 tracks per generation, the CMA mean checked on 20 fixed tracks every 10
# generations and the best check kept. Outputs: $DATA (default data/medium), $CKPT (default
# checkpoints/medium). Every stage resumes if interrupted: re-run the profile to go on.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/medium} CKPT=${CKPT:-checkpoints/medium} GENERATIONS=${GENERATIONS:-120}
python 01_generate_data.py --episodes 60 --out-dir $DATA/rollout
python 02_train_vae.py --epochs 4 --data-dir $DATA/rollout --checkpoint-dir $CKPT
python 03_generate_rnn_data.py --rollout-dir $DATA/rollout --series-dir $DATA/series --checkpoint-dir $CKPT
python 04_train_rnn.py --epochs 20 --batch-size 32 --seq-len 100 --series-dir $DATA/series --checkpoint-dir $CKPT
python 05_train_controller.py --generations $GENERATIONS --population 32 --episodes-per-candidate 4 \
    --patience 100 --check-every 10 --check-episodes 20 --checkpoint-dir $CKPT
python 05_train_controller.py --evaluate 100 --no-fast-render --checkpoint-dir $CKPT
echo "medium profile done: pictures, logs and models in $CKPT/"
