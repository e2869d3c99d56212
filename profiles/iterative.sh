#!/usr/bin/env bash
# Iterative profile: rounds of collect -> V -> encode -> M (and its ensemble members) -> C
# trained only in M's dream (or, with SEARCH=real, in the real env: profiles/large.sh).
# Round 1 collects with the exploration walk; round r > 1 with round r-1's agent (its V, M and
# dream-trained C, with noise on C's parameters) and adds its episodes to the same folder
# (track seeds from (r - 1) x 100000, so no round overwrites another's). V and M go on from the
# last round's weights on all rounds' data; C's search starts from the last round's controller.
# The dream runs M and MEMBERS - 1 ensemble members and pays their mean reward minus
# DISAGREEMENT x its std, so C is charged where the Ms disagree. With DROPOUT > 0, M and its
# members train with dropout on h and every dreamed step draws a new mask ("Dropout's Dream Land").
# FROM_ROUND=r runs rounds r..ROUNDS only and takes the earlier rounds as they are: a re-run that
# changes a setting from round r on (e.g. more MEMBERS: a member round r-1 lacks starts afresh).
# With CURIOSITY > 0, round 2 collects instead with a collector searched in the real env for
# return + CURIOSITY x M's surprise (COLLECTOR_GENERATIONS generations of 16 x 1 episodes, in
# round1/collector): its real steps are data collection, counted in its controller_log.csv.
# COLLECTOR=DIR has the agent in DIR (V, M, C, e.g. pretrained/) collect round 2 instead: M then
# learns from a good driver's episodes, as in "Dropout's Dream Land"; that driver's own training
# steps count as this run's cost.
# With SEARCH=dream (the default) C never learns from a real step: real episodes only collect
# data and are logged at the search's checks; with KEEP_BY=real they also choose which checked
# generation is kept (the validation tracks choose it, as they choose the round; C still learns
# from dreams alone). With SEARCH=real, C is searched in the real env
# (TRACKS_PER_CANDIDATE tracks per candidate, training episodes ended after PATIENCE steps
# without reward), round 1 for FIRST_GENERATIONS generations and every later round for
# GENERATIONS more from the last round's controller, at step size SIGMA0_NEXT with
# POPULATION_NEXT candidates of TRACKS_NEXT tracks each: the world model is retrained on the
# agent's own driving every GENERATIONS generations.
# In rounds 2+, V and M go on for at most V_EPOCHS_NEXT and M_EPOCHS_NEXT epochs and stop after
# EARLY_STOP epochs without a better held-out loss (0: all of them). Every stage resumes, so re-running the profile after an interruption goes
# on where it stopped. Outputs: data/iterative/rollout (every round's episodes),
# data/iterative/round<r>/rollout (links to rounds 1..r's), data/iterative/round<r>/series and
# checkpoints/iterative/round<r>/ (V, M, C, logs, GIFs, and the round's agent on EVALUATE validation tracks:
# evaluation.csv; the test tracks are for reporting the round chosen on them, by hand).
# The scale comes from the environment (defaults below); the tests run a tiny one.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/iterative} CKPT=${CKPT:-checkpoints/iterative} ROUNDS=${ROUNDS:-4}
EPISODES=${EPISODES:-60} MAX_STEPS=${MAX_STEPS:-1000} WORKERS=${WORKERS:-2}           # collection, per round
FIRST_EPISODES=${FIRST_EPISODES:-$EPISODES}  # round 1's (the exploration walk's)
V_EPOCHS=${V_EPOCHS:-4} V_EPOCHS_NEXT=${V_EPOCHS_NEXT:-1} V_BATCH=${V_BATCH:-100}  # V: round 1, then each round
V_STRIDE=${V_STRIDE:-1}  # an epoch of V trains on every V_STRIDE-th frame of each episode (02 --frame-stride)
V_ROUNDS=${V_ROUNDS:-2}  # V trains in rounds 1..V_ROUNDS; later rounds keep it (and its encoded series) and retrain M and C
V_FROM=${V_FROM:-}  # a vae.pt that round 1 takes instead of training one (then V_ROUNDS=0 keeps it for good)
M_EPOCHS=${M_EPOCHS:-30} DROPOUT=${DROPOUT:-0}                                       # M and each member, per round
M_EPOCHS_NEXT=${M_EPOCHS_NEXT:-$M_EPOCHS} M_BATCH=${M_BATCH:-32} M_SEQ=${M_SEQ:-100}  # M: rounds 2+; episodes per batch, steps per chunk
EARLY_STOP=${EARLY_STOP:-0}  # rounds 2+: V and M stop after this many epochs without a better held-out loss (0: never)
NOISE=${NOISE:-0.1}  # rounds 2+: the collecting agent's parameter noise (01 --policy-noise)
GENERATIONS=${GENERATIONS:-60} POPULATION=${POPULATION:-32} DREAMS=${DREAMS:-8}       # C's search in the dream
SEARCH=${SEARCH:-dream}  # dream: C is searched in M's dream; real: in the real env
FIRST_GENERATIONS=${FIRST_GENERATIONS:-$GENERATIONS} SIGMA0=${SIGMA0:-0.1} SIGMA0_NEXT=${SIGMA0_NEXT:-$SIGMA0}  # C: round 1; rounds 2+ start from the last C
TRACKS_PER_CANDIDATE=${TRACKS_PER_CANDIDATE:-4} PATIENCE=${PATIENCE:-0}                # SEARCH=real: tracks per candidate; 05 --patience
TRACKS_NEXT=${TRACKS_NEXT:-$TRACKS_PER_CANDIDATE} POPULATION_NEXT=${POPULATION_NEXT:-$POPULATION}  # SEARCH=real, rounds 2+
INPUTS=${INPUTS:-zh}  # what C reads: zh [z, h] (the paper's), z, or zhc [z, h, c] (05 --inputs)
TEMPERATURE=${TEMPERATURE:-1.15} CHECK_EVERY=${CHECK_EVERY:-10} CHECK_EPISODES=${CHECK_EPISODES:-10} EVALUATE=${EVALUATE:-100}
KEEP_BY=${KEEP_BY:-dream}  # the dream search keeps the controller of its best check in: dream, or real (05 --keep-by)
MEMBERS=${MEMBERS:-3} DISAGREEMENT=${DISAGREEMENT:-1.0}  # the dream runs M and MEMBERS-1 members; reward: mean - DISAGREEMENT x std
Z_DISAGREEMENT=${Z_DISAGREEMENT:-0}  # ... - Z_DISAGREEMENT x how far their z disagreement exceeds the recorded episodes' (05 --z-disagreement)
CURIOSITY=${CURIOSITY:-0.1} COLLECTOR_GENERATIONS=${COLLECTOR_GENERATIONS:-30}  # round 2's collector (0: round 1's C collects)
COLLECTOR=${COLLECTOR:-}  # a saved agent's folder that collects round 2 instead (e.g. pretrained: a real-env-trained driver)
DETOURS=${DETOURS:-0}  # rounds 2+: chance per step that the exploration walk takes the wheel for 20-80 steps (01 --detours)
FRAME=${FRAME:-paper}  # the frame V sees: paper (the bar cropped) or full (the gauges kept, the score blacked out; 01 --frame)
FROM_ROUND=${FROM_ROUND:-1}
if [ "$FROM_ROUND" -gt 1 ] && [ ! -e "$CKPT/round$((FROM_ROUND - 1))/controller.pt" ]; then
    echo "error: FROM_ROUND=$FROM_ROUND needs round $((FROM_ROUND - 1))'s agent in $CKPT/round$((FROM_ROUND - 1)); run the earlier rounds first" >&2
    exit 2
fi
for round in $(seq "$FROM_ROUND" "$ROUNDS"); do
    here=$CKPT/round$round series=$DATA/round$round/series last=$CKPT/round$((round - 1))
    collect=(--frame "$FRAME") v_from=() c_from=() v_epochs=$V_EPOCHS m_epochs=$M_EPOCHS episodes=$FIRST_EPISODES
    generations=$FIRST_GENERATIONS sigma0=$SIGMA0 early=0 tracks=$TRACKS_PER_CANDIDATE population=$POPULATION
    if [ "$round" -gt 1 ]; then
        collect=(--policy "$last" --policy-noise "$NOISE" --frame "$FRAME") v_from=(--init-from "$last/vae.pt") v_epochs=$V_EPOCHS_NEXT episodes=$EPISODES
        c_from=(--init-from "$last/controller.pt") m_epochs=$M_EPOCHS_NEXT generations=$GENERATIONS sigma0=$SIGMA0_NEXT early=$EARLY_STOP
        if [ "$SEARCH" = real ]; then tracks=$TRACKS_NEXT population=$POPULATION_NEXT; fi
        if [ -d "$last/collector" ]; then collect=(--policy "$last/collector" --frame "$FRAME"); fi
        if [ "$round" = 2 ] && [ -n "$COLLECTOR" ]; then collect=(--policy "$COLLECTOR" --frame "$FRAME"); fi
        collect+=(--detours "$DETOURS")
    fi
    python 01_generate_data.py --episodes "$episodes" --first-seed $(( (round - 1) * 100000 )) --max-steps "$MAX_STEPS" \
        --workers "$WORKERS" --out-dir "$DATA/rollout" "${collect[@]}"
    # round r reads the episodes of rounds 1..r only (hard links), so that a re-run with more ROUNDS
    # does not add later rounds' episodes to an earlier round's V, series and first latents
    rounds_so_far=$DATA/round$round/rollout && mkdir -p "$rounds_so_far"
    for file in "$DATA/rollout/"ep*.npz; do
        [ -e "$file" ] || continue
        name=${file##*/}
        if [ $((10#${name:2:8})) -lt $((round * 100000)) ] && [ ! -e "$rounds_so_far/$name" ]; then
            ln "$file" "$rounds_so_far/$name" 2>/dev/null || cp "$file" "$rounds_so_far/$name"
        fi
    done
    if [ "$round" = 1 ] && [ -n "$V_FROM" ]; then
        mkdir -p "$here" && { [ -e "$here/vae.pt" ] || cp "$V_FROM" "$here/vae.pt"; }
    elif [ "$round" -le "$V_ROUNDS" ]; then
        python 02_train_vae.py --epochs "$v_epochs" --batch-size "$V_BATCH" --frame-stride "$V_STRIDE" --early-stop "$early" \
            --data-dir "$rounds_so_far" --checkpoint-dir "$here" "${v_from[@]}"
    else  # the same V: its series of the earlier rounds' episodes stay valid, so 03 encodes only the new ones
        mkdir -p "$here" "$series" && { [ -e "$here/vae.pt" ] || cp "$last/vae.pt" "$here/"; }
        for file in "$DATA/round$((round - 1))/series/"ep*.npz; do [ -e "$series/${file##*/}" ] || cp "$file" "$series/"; done
    fi
    python 03_generate_rnn_data.py --rollout-dir "$rounds_so_far" --series-dir "$series" --checkpoint-dir "$here"
    for member in $(seq 0 $((MEMBERS - 1))); do
        file=mdrnn.pt m_from=()
        if [ "$member" -gt 0 ]; then file=mdrnn_member$member.pt; fi
        if [ "$round" -gt 1 ] && [ -e "$last/$file" ]; then m_from=(--init-from "$last/$file"); fi  # a new member starts afresh
        python 04_train_rnn.py --epochs "$m_epochs" --batch-size "$M_BATCH" --seq-len "$M_SEQ" --early-stop "$early" --dropout "$DROPOUT" \
            --series-dir "$series" --checkpoint-dir "$here" --member "$member" "${m_from[@]}"
    done
    if [ "$round" = 1 ] && [ "$ROUNDS" -gt 1 ] && [ "$CURIOSITY" != 0 ] && [ -z "$COLLECTOR" ]; then
        mkdir -p "$here/collector" && cp "$here/vae.pt" "$here/mdrnn.pt" "$here/collector/"
        python 05_train_controller.py --curiosity "$CURIOSITY" --generations "$COLLECTOR_GENERATIONS" --population 16 \
            --episodes-per-candidate 1 --patience 100 --check-every "$CHECK_EVERY" --check-episodes "$CHECK_EPISODES" --max-steps "$MAX_STEPS" \
            --workers "$WORKERS" --checkpoint-dir "$here/collector"
    fi
    search=(--dream --temperature "$TEMPERATURE" --series-dir "$series" --episodes-per-candidate "$DREAMS" --members "$MEMBERS"
            --disagreement "$DISAGREEMENT" --z-disagreement "$Z_DISAGREEMENT" --keep-by "$KEEP_BY")
    if [ "$SEARCH" = real ]; then search=(--episodes-per-candidate "$tracks" --patience "$PATIENCE"); fi
    python 05_train_controller.py "${search[@]}" --inputs "$INPUTS" --generations "$generations" --sigma0 "$sigma0" --population "$population" \
        --check-every "$CHECK_EVERY" --check-episodes "$CHECK_EPISODES" --max-steps "$MAX_STEPS" --workers "$WORKERS" --checkpoint-dir "$here" \
        "${c_from[@]}"
    # each round's agent on the validation tracks (the choice between rounds is made on them), unless already done
    if [ ! "$here/evaluation.csv" -nt "$here/controller.pt" ]; then
        python 05_train_controller.py --evaluate "$EVALUATE" --tracks validation --max-steps "$MAX_STEPS" --workers "$WORKERS" \
            --checkpoint-dir "$here"
    fi
done
echo "iterative profile done: round r's models, logs, GIFs and validation scores (evaluation.csv) in $CKPT/round<r>/," \
    "every round's episodes in $DATA/rollout/; report the round chosen on validation with 05 --evaluate (test tracks)"
