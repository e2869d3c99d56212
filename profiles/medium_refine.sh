#!/usr/bin/env bash
# Medium profile, refined (after profiles/medium.sh): the same V and M; C's search goes on from
# the medium controller with a smaller step size and twice the tracks per candidate (CMA-ES
# 32 x 8 for 40 generations, the CMA mean checked on 20 tracks every 10 generations, the
# best check kept), so that candidates are ranked on less noisy fitnesses; then a
# stock-renderer evaluation on 100 unseen tracks. Outputs: $CKPT (default
# checkpoints/medium_refine). Every stage resumes: re-run the profile to go on.
set -euo pipefail
cd "$(dirname "$0")/.."
FROM=${FROM:-checkpoints/medium} FROM_DATA=${FROM_DATA:-data/medium}
CKPT=${CKPT:-checkpoints/medium_refine} GENERATIONS=${GENERATIONS:-40}
mkdir -p $CKPT
for file in vae.pt vae_config.json mdrnn.pt mdrnn_config.json; do [ -e "$CKPT/$file" ] || cp "$FROM/$file" "$CKPT/"; done
python 05_train_controller.py --init-from $FROM/controller.pt --sigma0 0.03 --generations $GENERATIONS --population 32 \
    --episodes-per-candidate 8 --patience 100 --check-every 10 --check-episodes 20 --series-dir $FROM_DATA/series \
    --checkpoint-dir $CKPT
python 05_train_controller.py --evaluate 100 --no-fast-render --checkpoint-dir $CKPT
echo "medium refine done: pictures, logs and models in $CKPT/"
