#!/usr/bin/env bash
# Quick profile: all five stages at toy scale (about 2 minutes on 2 CPU cores).
# Proves the pipeline runs; the agent barely learns. Outputs: data/quick/, checkpoints/quick/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=data/quick CKPT=checkpoints/quick
python 01_generate_data.py --episodes 16 --max-steps 400 --out-dir $DATA/rollout
python 02_train_vae.py --epochs 3 --data-dir $DATA/rollout --checkpoint-dir $CKPT
python 03_generate_rnn_data.py --rollout-dir $DATA/rollout --series-dir $DATA/series --checkpoint-dir $CKPT
python 04_train_rnn.py --epochs 10 --batch-size 16 --seq-len 100 --series-dir $DATA/series --checkpoint-dir $CKPT
python 05_train_controller.py --generations 4 --population 8 --episodes-per-candidate 1 --max-steps 400 \
    --patience 100 --check-every 2 --check-episodes 4 --checkpoint-dir $CKPT
python 05_train_controller.py --evaluate 4 --max-steps 400 --checkpoint-dir $CKPT
echo "quick profile done: pictures, logs and models in $CKPT/"
