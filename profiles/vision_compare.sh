#!/usr/bin/env bash
# VAE against VAE-GAN, on the same data and with the same budgets: the medium profile's 60
# exploration episodes (the same held-out 3), V for 4 epochs, M for 20, C's search for 40
# generations of 16 candidates x 2 tracks (the CMA mean checked on 10 tracks every 10), then
# each agent on 100 unseen tracks, the dream-to-real gap and benchmarks/vision_compare.py.
# Outputs: checkpoints/vision/{vae,vaegan}/, data/vision/{vae,vaegan}/series. Every stage
# resumes if interrupted: re-run the profile to go on.
set -euo pipefail
cd "$(dirname "$0")/.."
ROLLOUT=${ROLLOUT:-data/medium/rollout}
python 01_generate_data.py --episodes 60 --out-dir $ROLLOUT
for VISION in vae vaegan; do
    CKPT=checkpoints/vision/$VISION SERIES=data/vision/$VISION/series
    python 02_train_vae.py --vision $VISION --epochs 4 --data-dir $ROLLOUT --checkpoint-dir $CKPT
    python 03_generate_rnn_data.py --rollout-dir $ROLLOUT --series-dir $SERIES --checkpoint-dir $CKPT
    python 04_train_rnn.py --epochs 20 --batch-size 32 --seq-len 100 --series-dir $SERIES --checkpoint-dir $CKPT
    python 05_train_controller.py --generations 40 --population 16 --episodes-per-candidate 2 \
        --patience 100 --check-every 10 --check-episodes 10 --checkpoint-dir $CKPT
    python 05_train_controller.py --evaluate 100 --checkpoint-dir $CKPT
    python benchmarks/dream_gap.py --checkpoint-dir $CKPT --series-dir $SERIES --controllers $CKPT/controller.pt \
        --tracks 10 --temperatures 1.0 1.15 | tee $CKPT/dream_gap.txt
done
python benchmarks/vision_compare.py checkpoints/vision/vae checkpoints/vision/vaegan --rollout-dir $ROLLOUT \
    --picture checkpoints/vision/compare.png | tee checkpoints/vision/compare.md
echo "vision comparison done: checkpoints/vision/compare.md and compare.png"
