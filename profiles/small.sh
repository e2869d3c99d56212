#!/usr/bin/env bash
# Small profile: about half an hour on 2 CPU cores (33 min measured), end to end; the agent learns to drive.
# Outputs: data/small/, checkpoints/small/. Every stage resumes if interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=data/small CKPT=checkpoints/small
python 01_generate_data.py --episodes 60 --out-dir $DATA/rollout
python 02_train_vae.py --epochs 5 --data-dir $DATA/rollout --checkpoint-dir $CKPT
python 03_generate_rnn_data.py --rollout-dir $DATA/rollout --series-dir $DATA/series --checkpoint-dir $CKPT
python 04_train_rnn.py --epochs 30 --batch-size 32 --seq-len 100 --series-dir $DATA/series --checkpoint-dir $CKPT
python 05_train_controller.py --generations 70 --population 16 --episodes-per-candidate 1 \
    --patience 100 --check-every 5 --check-episodes 10 --checkpoint-dir $CKPT
python 05_train_controller.py --evaluate 20 --checkpoint-dir $CKPT
echo "small profile done: pictures, logs and models in $CKPT/"
