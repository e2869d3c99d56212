#!/usr/bin/env bash
# Medium profile, round 2 (after profiles/medium.sh): the medium agent drives 60 new tracks
# (noise of std 0.05 on C's parameters per episode), V and M go on from the medium run's weights
# for one and ten passes over all 120 episodes, and C's search goes on from the medium
# controller with a smaller step size (CMA-ES 32 x 4, the CMA mean checked on 20 tracks every
# 10 generations, the best check kept); then a stock-renderer evaluation on 100 unseen tracks.
# Outputs: $DATA (default data/medium2), $CKPT (default checkpoints/medium2). Every stage
# resumes: re-run the profile to go on.
set -euo pipefail
cd "$(dirname "$0")/.."
FROM=${FROM:-checkpoints/medium} FROM_DATA=${FROM_DATA:-data/medium}
DATA=${DATA:-data/medium2} CKPT=${CKPT:-checkpoints/medium2} GENERATIONS=${GENERATIONS:-40}
mkdir -p $DATA/rollout
for file in $FROM_DATA/rollout/ep*.npz; do [ -e "$DATA/rollout/${file##*/}" ] || cp "$file" "$DATA/rollout/"; done
python 01_generate_data.py --episodes 60 --first-seed 100000 --policy $FROM --policy-noise 0.05 --out-dir $DATA/rollout
python 02_train_vae.py --epochs 1 --init-from $FROM/vae.pt --data-dir $DATA/rollout --checkpoint-dir $CKPT
python 03_generate_rnn_data.py --rollout-dir $DATA/rollout --series-dir $DATA/series --checkpoint-dir $CKPT
python 04_train_rnn.py --epochs 10 --batch-size 32 --seq-len 100 --init-from $FROM/mdrnn.pt --series-dir $DATA/series \
    --checkpoint-dir $CKPT
python 05_train_controller.py --init-from $FROM/controller.pt --sigma0 0.05 --generations $GENERATIONS --population 32 \
    --episodes-per-candidate 4 --patience 100 --check-every 10 --check-episodes 20 --series-dir $DATA/series \
    --checkpoint-dir $CKPT
python 05_train_controller.py --evaluate 100 --no-fast-render --checkpoint-dir $CKPT
echo "medium round 2 done: pictures, logs and models in $CKPT/"
