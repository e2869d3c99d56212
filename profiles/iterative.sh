#!/usr/bin/env bash
# Iterative profile: rounds of collect -> V -> encode -> M -> C trained only in M's dream.
# Round 1 collects with the exploration walk; round r > 1 with round r-1's agent (its V, M and
# dream-trained C, with noise on C's parameters) and adds its episodes to the same folder
# (track seeds from (r - 1) x 100000, so no round overwrites another's). V and M go on from the
# last round's weights on all rounds' data; C's search starts from the last round's controller.
# C never learns from a real step: real episodes only collect data and are logged at the
# search's checks. Every stage resumes, so re-running the profile after an interruption goes
# on where it stopped. Outputs: data/iterative/rollout (every round's episodes),
# data/iterative/round<r>/series and checkpoints/iterative/round<r>/ (V, M, C, logs, GIFs).
# The scale comes from the environment (defaults below); the tests run a tiny one.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/iterative} CKPT=${CKPT:-checkpoints/iterative} ROUNDS=${ROUNDS:-3}
EPISODES=${EPISODES:-60} MAX_STEPS=${MAX_STEPS:-1000} WORKERS=${WORKERS:-2}           # collection, per round
V_EPOCHS=${V_EPOCHS:-5} V_BATCH=${V_BATCH:-100} M_EPOCHS=${M_EPOCHS:-30}              # V and M, per round
GENERATIONS=${GENERATIONS:-100} POPULATION=${POPULATION:-32} DREAMS=${DREAMS:-8}       # C's search in the dream
TEMPERATURE=${TEMPERATURE:-1.15} CHECK_EPISODES=${CHECK_EPISODES:-10} EVALUATE=${EVALUATE:-100}
for round in $(seq 1 "$ROUNDS"); do
    here=$CKPT/round$round series=$DATA/round$round/series last=$CKPT/round$((round - 1))
    collect=() v_from=() m_from=() c_from=()
    if [ "$round" -gt 1 ]; then
        collect=(--policy "$last") v_from=(--init-from "$last/vae.pt") m_from=(--init-from "$last/mdrnn.pt")
        c_from=(--init-from "$last/controller.pt")
    fi
    python 01_generate_data.py --episodes "$EPISODES" --first-seed $(( (round - 1) * 100000 )) --max-steps "$MAX_STEPS" \
        --workers "$WORKERS" --out-dir "$DATA/rollout" "${collect[@]}"
    python 02_train_vae.py --epochs "$V_EPOCHS" --batch-size "$V_BATCH" --data-dir "$DATA/rollout" --checkpoint-dir "$here" "${v_from[@]}"
    python 03_generate_rnn_data.py --rollout-dir "$DATA/rollout" --series-dir "$series" --checkpoint-dir "$here"
    python 04_train_rnn.py --epochs "$M_EPOCHS" --batch-size 32 --seq-len 100 --series-dir "$series" --checkpoint-dir "$here" "${m_from[@]}"
    python 05_train_controller.py --dream --temperature "$TEMPERATURE" --series-dir "$series" --generations "$GENERATIONS" \
        --population "$POPULATION" --episodes-per-candidate "$DREAMS" --check-every 20 --check-episodes "$CHECK_EPISODES" \
        --max-steps "$MAX_STEPS" --workers "$WORKERS" --checkpoint-dir "$here" "${c_from[@]}"
done
python 05_train_controller.py --evaluate "$EVALUATE" --max-steps "$MAX_STEPS" --workers "$WORKERS" --checkpoint-dir "$CKPT/round$ROUNDS"
echo "iterative profile done: round r's models, logs and GIFs in $CKPT/round<r>/, every round's episodes in $DATA/rollout/"
