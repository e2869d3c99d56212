#!/usr/bin/env bash
# Dream profile: C trained inside M's dream at several temperatures, then driven on real tracks.
# Needs the small profile's V (checkpoints/small/vae.pt): run profiles/small.sh first.
# M is trained on more exploration episodes than the small profile's. Outputs: data/dream/,
# checkpoints/dream/ (V and M) and checkpoints/dream/tau<T>/ (one dream-trained C per temperature).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=data/dream CKPT=checkpoints/dream TEMPERATURES="${TEMPERATURES:-0.5 1.0 1.15 1.3}"
mkdir -p $CKPT && { [ -e $CKPT/vae.pt ] || cp checkpoints/small/vae.pt $CKPT/vae.pt; }  # the series are encoded by this V
python 01_generate_data.py --episodes 400 --out-dir $DATA/rollout
python 03_generate_rnn_data.py --rollout-dir $DATA/rollout --series-dir $DATA/series --checkpoint-dir $CKPT
python 04_train_rnn.py --epochs 20 --batch-size 32 --seq-len 100 --series-dir $DATA/series --checkpoint-dir $CKPT
for tau in $TEMPERATURES; do
    mkdir -p $CKPT/tau$tau && cp $CKPT/vae.pt $CKPT/mdrnn.pt $CKPT/tau$tau/
    python 05_train_controller.py --dream --temperature $tau --series-dir $DATA/series --generations 100 \
        --population 32 --episodes-per-candidate 8 --check-every 20 --check-episodes 20 --checkpoint-dir $CKPT/tau$tau
    python 05_train_controller.py --evaluate 100 --dream --temperature $tau --series-dir $DATA/series --checkpoint-dir $CKPT/tau$tau
done
echo "dream profile done: one dream-trained controller, log and dream_vs_real.gif per temperature in $CKPT/tau*/"
