#!/usr/bin/env bash
# Large profile: the world model at the seed's data scale, retrained on the agent's own driving.
# Round 1: 2000 episodes of the exploration walk; V on every 10th frame of every episode per
# epoch (10 epochs would see each frame once), M on every step; C searched in the real env.
# Rounds 2+: the last round's controller collects EPISODES more episodes (with parameter noise,
# as CMA-ES samples around its mean), V and M go on from their weights on all rounds' data until
# their held-out loss stops improving, everything is encoded again, and the search goes on from
# the last controller for GENERATIONS generations, at a smaller step size and with 8 tracks per
# candidate instead of 4 (as the refinement that made the shipped agent did). It is the iterative
# profile's loop with the search in the real env (profiles/iterative.sh has every setting); each
# stage resumes, so re-run the profile after an interruption. docs/world-model-scale.md has the
# measurements behind these settings, each stage's time, disk and memory, and the scores.
# Outputs: data/large/rollout (every round's episodes), data/large/round<r>/, checkpoints/large/round<r>/.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATA=${DATA:-data/large} CKPT=${CKPT:-checkpoints/large} ROUNDS=${ROUNDS:-6}
export FIRST_EPISODES=${FIRST_EPISODES:-2000} EPISODES=${EPISODES:-200} NOISE=${NOISE:-0.05}     # collection
export V_EPOCHS=${V_EPOCHS:-6} V_STRIDE=${V_STRIDE:-10} V_EPOCHS_NEXT=${V_EPOCHS_NEXT:-4} V_ROUNDS=${V_ROUNDS:-$ROUNDS}  # V
export M_EPOCHS=${M_EPOCHS:-20} M_EPOCHS_NEXT=${M_EPOCHS_NEXT:-10} M_BATCH=${M_BATCH:-32} M_SEQ=${M_SEQ:-100}  # M
export EARLY_STOP=${EARLY_STOP:-1}  # rounds 2+: V and M stop at the first epoch without a better held-out loss
export SEARCH=real FIRST_GENERATIONS=${FIRST_GENERATIONS:-50} GENERATIONS=${GENERATIONS:-20}  # C in the real env
export POPULATION=${POPULATION:-32} TRACKS_PER_CANDIDATE=${TRACKS_PER_CANDIDATE:-4} TRACKS_NEXT=${TRACKS_NEXT:-8} PATIENCE=${PATIENCE:-0}
export SIGMA0=${SIGMA0:-0.1} SIGMA0_NEXT=${SIGMA0_NEXT:-0.05} CHECK_EVERY=${CHECK_EVERY:-5} CHECK_EPISODES=${CHECK_EPISODES:-50}
export INPUTS=${INPUTS:-zh} MEMBERS=1 CURIOSITY=0 DISAGREEMENT=0 EVALUATE=${EVALUATE:-100}
exec bash profiles/iterative.sh
