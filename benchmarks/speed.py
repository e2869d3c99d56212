"""Rollout and training speed of the pipeline against its baselines, measured side by side.

Absolute rates drift on a shared machine, so each comparison runs both sides in the same
run, alternating where it can, and prints their ratio:

1. env steps/s, stock vs fast renderer, on one core and on all cores (random-walk actions,
   the same tracks for both).
2. stage 01: frames/s written to disk by 01_generate_data.py, fast vs stock, and its peak
   memory.
3. stage 05 controller evaluation (env + V + M + C), all cores for all: the naive baseline
   (stock env, batch-1 inference), the fast env with batched float32 inference on 96x96
   frames (--no-fast-acting), and fast acting (64x64 frames drawn directly, V's encoder in
   bfloat16 where the CPU has it: the default), run three times in turn; and the peak memory
   of a short 05_train_controller.py run.
   ``breakdown``: where one env step's time goes, on one core, for both fast paths.
   ``scores`` (needs controller.pt): the saved controller on the same tracks with and
   without fast acting, paired.
4. stage 02: training images/s on frames streamed from a paper-sized dataset (2000
   episodes, hard links to real ones) against the same training steps on random tensors
   (model-only compute), alternating; and the peak memory of 02_train_vae.py on that
   dataset.

Peak memory is the largest sum of resident memory over a stage's process and its workers,
sampled every 0.2 s. Needs trained V and M and real rollouts, e.g. from profiles/small.sh:

    python benchmarks/speed.py --checkpoint-dir checkpoints/small --rollout-dir data/small/rollout
    python benchmarks/speed.py --checkpoint-dir checkpoints/medium --parts stage05 breakdown scores
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worldmodels.checkpoints import CONTROLLER_FILE, MDRNN_FILE, VAE_FILE, VISION, controller_inputs, load_checkpoint, load_model, load_vae_and_mdrnn  # noqa: E402
from worldmodels.cli import finite_float, load_stage_script  # noqa: E402
from worldmodels.constants import ACTION_SIZE, MAX_EPISODE_STEPS  # noqa: E402
from worldmodels.controller import parameter_count  # noqa: E402
from worldmodels.data import stream_frame_batches  # noqa: E402
from worldmodels.env import VALIDATION_SEED_BASE, make_env  # noqa: E402
from worldmodels.episodes import episode_id, list_episodes, rollout_length  # noqa: E402
from worldmodels.exploration import RandomWalkPolicy  # noqa: E402
from worldmodels.frames import FRAME_SIZE, frame_preparer, frames_to_tensor_layout  # noqa: E402
from worldmodels.parallel import LocalPool, WorkerPool, default_workers  # noqa: E402
from worldmodels.rollout import Agent, run_agent_parallel, share_agent_models  # noqa: E402
from worldmodels.vision import TrainingSettings  # noqa: E402

PAPER_EPISODES = 2000  # the paper's dataset size, for stage 02
PARTS = ("env", "stage05", "breakdown", "scores", "stage01", "stage02")


def env_steps(job: tuple[int, int, bool]) -> tuple[int, float]:
    """Drive track ``seed`` with the random walk for up to ``steps``: (steps, seconds)."""
    seed, steps, fast_render = job
    env = make_env(steps, fast_render)
    policy = RandomWalkPolicy(np.random.default_rng(seed))
    env.reset(seed=seed)
    started, done, count = time.perf_counter(), False, 0
    while not done:
        _, _, terminated, truncated, _ = env.step(policy())
        done, count = terminated or truncated, count + 1
    elapsed = time.perf_counter() - started
    env.close()
    return count, elapsed


def compare_env(tracks: int, steps: int, pool: WorkerPool) -> None:
    one_core = {False: [0, 0.0], True: [0, 0.0]}
    for seed in range(tracks):  # alternate track by track so drift hits both alike
        for fast in (False, True):
            count, elapsed = env_steps((seed, steps, fast))
            one_core[fast][0] += count
            one_core[fast][1] += elapsed
    stock, fast = (one_core[k][0] / one_core[k][1] for k in (False, True))
    report("env steps/s, 1 core", stock, fast, "stock", "fast")
    all_cores = {}
    for fast in (False, True):
        jobs = [(seed, steps, fast) for seed in range(tracks * pool.workers)]
        started = time.perf_counter()
        count = sum(c for c, _ in pool.map(env_steps, jobs))
        all_cores[fast] = count / (time.perf_counter() - started)
    report(f"env steps/s, {pool.workers} cores", all_cores[False], all_cores[True], "stock", "fast")


def compare_stage01(episodes: int, steps: int, workers: int, scratch: Path) -> None:
    rates = {}
    for flag in ("--no-fast-render", "--fast-render"):
        out = scratch / f"rollout{flag}"
        seconds, peak = run_measured([sys.executable, str(ROOT / "01_generate_data.py"), "--episodes", str(episodes),
                                      "--max-steps", str(steps), "--workers", str(workers), "--out-dir", str(out), flag])
        rates[flag] = sum(map(rollout_length, list_episodes(out))) / seconds
        print(f"  stage 01 {flag}: {episodes} episodes in {seconds:.1f} s, peak memory {peak:.2f} GB")
    report("stage 01 frames/s written", rates["--no-fast-render"], rates["--fast-render"], "stock", "fast")


STAGE05_PATHS = {  # name: (fast_render, fast_acting, envs per job)
    "naive": (False, False, 1),
    "fast env, float32": (True, False, 64),
    "fast acting": (True, True, 64),
}


def compare_stage05(checkpoint_dir: Path, episodes: int, steps: int, pool: WorkerPool, scratch: Path) -> None:
    vae, mdrnn = load_vae_and_mdrnn(checkpoint_dir / VAE_FILE, checkpoint_dir / MDRNN_FILE)
    models = share_agent_models(pool, vae, mdrnn)
    # Random controllers, as in an early CMA-ES generation; episodes run up to ``steps`` (no patience).
    # The batched paths split them into jobs as stage 05 does (at least two per worker, at most 64 envs each).
    params = np.random.default_rng(0).normal(0, 0.1, (episodes, parameter_count(vae.z_size + mdrnn.hidden_size)))
    seeds = list(range(episodes))
    counts, seconds = {name: 0 for name in STAGE05_PATHS}, {name: 0.0 for name in STAGE05_PATHS}
    for round_ in range(3):  # in turn, so drift hits all alike
        for name, (fast_render, fast_acting, per_job) in STAGE05_PATHS.items():
            started = time.perf_counter()
            results = run_agent_parallel(pool, models, params, seeds, steps, fast_render=fast_render,
                                         max_envs_per_job=per_job, fast_acting=fast_acting)
            seconds[name] += time.perf_counter() - started
            counts[name] += int(results.steps.sum())
            print(f"  round {round_ + 1}, {name}: {results.steps.sum() / (time.perf_counter() - started):,.0f} steps/s",
                  flush=True)
    rates = {name: counts[name] / seconds[name] for name in STAGE05_PATHS}
    report(f"stage 05 evaluation steps/s, {pool.workers} cores", rates["naive"], rates["fast env, float32"],
           "stock env + batch-1 inference", "fast env + batched inference (float32, 96x96)")
    report(f"stage 05 evaluation steps/s, {pool.workers} cores", rates["fast env, float32"], rates["fast acting"],
           "fast env + batched inference (float32, 96x96)", "fast acting (64x64 drawn, bf16 V)")
    run_dir = scratch / "controller"
    run_dir.mkdir()
    for name in (VAE_FILE, MDRNN_FILE):
        os.link(checkpoint_dir / name, run_dir / name)
    seconds, peak = run_measured([sys.executable, str(ROOT / "05_train_controller.py"), "--generations", "2",
                                  "--population", "16", "--episodes-per-candidate", "4", "--max-steps", str(steps),
                                  "--check-every", "2", "--check-episodes", "8", "--workers", str(pool.workers),
                                  "--checkpoint-dir", str(run_dir)])
    print(f"  stage 05 peak memory: {peak:.2f} GB (2 generations of 16 x 4 episodes, {seconds:.0f} s)")


def step_breakdown(checkpoint_dir: Path, envs: int, steps: int) -> None:
    """Microseconds per env step in each part of stage 05's loop, in this process on one
    thread, for the float32 path and fast acting (one batch of ``envs`` envs, ``steps`` steps)."""
    torch.set_num_threads(1)
    vae, mdrnn = load_vae_and_mdrnn(checkpoint_dir / VAE_FILE, checkpoint_dir / MDRNN_FILE)
    params = np.random.default_rng(0).normal(0, 0.1, (envs, parameter_count(vae.z_size + mdrnn.hidden_size)))
    for fast_acting in (False, True):
        parts = dict.fromkeys(("physics and wrappers", "render", "preprocess", "V", "M, C and batching"), 0.0)

        def timed(function, part):
            def measured(*args):
                started = time.perf_counter()
                out = function(*args)
                parts[part] += time.perf_counter() - started
                return out
            return measured

        env_list = [make_env(steps, True, agent_frames=fast_acting, frame_kind=vae.frame_kind) for _ in range(envs)]
        prepare = frame_preparer(fast_acting, vae.frame_kind)
        frames = np.stack([prepare(env.reset(seed=i)[0]) for i, env in enumerate(env_list)])
        for env in env_list:
            env.unwrapped._render = timed(env.unwrapped._render, "render")
        agent = Agent(vae, mdrnn, params, fast_acting=fast_acting)
        if fast_acting:
            agent.acting_encoder = timed(agent.acting_encoder, "V")
        else:
            vae.encode = timed(vae.encode, "V")  # on this instance only; removed below
        active, started_all = np.ones(envs, dtype=bool), time.perf_counter()
        for _ in range(steps):
            started = time.perf_counter()
            actions = agent.act(frames, active)
            parts["M, C and batching"] += time.perf_counter() - started
            for i, env in enumerate(env_list):
                started = time.perf_counter()
                frame, *_ = env.step(actions[i])
                parts["physics and wrappers"] += time.perf_counter() - started
                started = time.perf_counter()
                frames[i] = prepare(frame)
                parts["preprocess"] += time.perf_counter() - started
        elapsed = time.perf_counter() - started_all
        parts["physics and wrappers"] -= parts["render"]  # env.step's time includes the drawing
        parts["M, C and batching"] -= parts["V"]
        if not fast_acting:
            del vae.encode
        for env in env_list:
            env.close()
        count = envs * steps
        name = "fast acting (64x64 drawn, bf16 V)" if fast_acting else "fast env, float32 96x96"
        shown = ", ".join(f"{part} {seconds / count * 1e6:.0f}" for part, seconds in parts.items())
        print(f"  {name}: {elapsed / count * 1e6:.0f} us per step: {shown}", flush=True)


def compare_scores(checkpoint_dir: Path, tracks: int, pool: WorkerPool) -> None:
    """The saved controller on the same ``tracks`` validation tracks, fast renderer, with and
    without fast acting: mean ± std of each and the paired difference ± its standard error."""
    controller = load_checkpoint(str(checkpoint_dir / CONTROLLER_FILE), "controller", "05_train_controller.py")
    params = np.repeat(controller["params"].numpy()[None], tracks, axis=0)
    seeds = [VALIDATION_SEED_BASE + i for i in range(tracks)]  # a setting is chosen on validation tracks
    models = share_agent_models(pool, *load_vae_and_mdrnn(checkpoint_dir / VAE_FILE, checkpoint_dir / MDRNN_FILE))
    returns = {}
    for fast_acting in (False, True):
        returns[fast_acting] = run_agent_parallel(pool, models, params, seeds, MAX_EPISODE_STEPS, inputs=controller_inputs(controller["config"]),
                                                  fast_render=True, fast_acting=fast_acting,
                                                  desc=f"scores, fast acting {'on' if fast_acting else 'off'}").returns
        print(f"  fast acting {'on' if fast_acting else 'off'}: {returns[fast_acting].mean():.1f} ± "
              f"{returns[fast_acting].std():.1f} on tracks {seeds[0]}..{seeds[-1]}", flush=True)
    difference = returns[True] - returns[False]
    print(f"  paired difference (on - off): {difference.mean():.1f} ± {difference.std(ddof=1) / np.sqrt(tracks):.1f} "
          f"standard error; {np.mean(np.abs(difference) < 1):.0%} of tracks within 1 point")


def compare_stage02(rollout_dir: Path, checkpoint_dir: Path, seconds: float, scratch: Path) -> None:
    defaults = load_stage_script("02_train_vae.py").parse_args([])  # batch size, buffer, lr, KL tolerance
    sources = list_episodes(rollout_dir)
    rollout = scratch / "paper_rollout"
    rollout.mkdir()
    for i in range(PAPER_EPISODES):
        os.link(sources[i % len(sources)], rollout / f"{episode_id(i)}.npz")
    files = list_episodes(rollout)
    frames = sum(map(rollout_length, files))
    print(f"  stage 02 dataset: {len(files)} episodes, {frames} frames ({frames * FRAME_SIZE**2 * 3 / 1e9:.1f} GB as uint8)")
    vae = load_model(str(checkpoint_dir / VAE_FILE), VISION).train()
    optimizer, settings = vae.make_optimizer(defaults.lr), TrainingSettings(kl_tolerance=defaults.kl_tolerance)

    def train(batches: Iterator[np.ndarray], budget: float) -> float:
        """Images per second of stage 02's training step on ``batches`` for ``budget`` seconds
        (after the first batch: an epoch's one-time start)."""
        next(batches)
        images, started = 0, time.perf_counter()
        for frames in batches:
            vae.train_step(torch.from_numpy(frames_to_tensor_layout(frames)), optimizer, settings)
            images += len(frames)
            if time.perf_counter() - started >= budget:
                break
        return images / (time.perf_counter() - started)

    def random_batches() -> Iterator[np.ndarray]:
        generator = torch.Generator().manual_seed(0)
        while True:
            yield torch.randint(0, 256, (defaults.batch_size, FRAME_SIZE, FRAME_SIZE, 3), dtype=torch.uint8,
                                generator=generator).numpy()

    # Streamed in groups of 5 episodes, so each window holds about a dozen group loads (with
    # the default 50 a group lasts ~100 s and a short window would hold 0 or 1). The loading
    # work per frame (decompress, one shuffled copy) does not depend on the group size.
    streamed, model_only = [], []
    for round_ in range(2):  # alternate so drift hits both alike
        streamed.append(train(stream_frame_batches(files, defaults.batch_size, 5, seed=round_), seconds / 4))
        model_only.append(train(random_batches(), seconds / 4))
    stream_rate, model_rate = float(np.mean(streamed)), float(np.mean(model_only))
    report("stage 02 training images/s", model_rate, stream_rate, "random tensors (model only)", "streamed from disk")
    print(f"  time lost to data loading: {max(0.0, 1 - stream_rate / model_rate):.1%} of training time")
    loader_frames, started = 0, time.perf_counter()
    for batch in stream_frame_batches(files[:500], defaults.batch_size, defaults.buffer_episodes, seed=0):
        loader_frames += len(batch)
    loader_rate = loader_frames / (time.perf_counter() - started)
    print(f"  loader alone (groups of {defaults.buffer_episodes}, 500 episodes): {loader_rate:,.0f} frames/s; even with no "
          f"overlap at all, loading would take {model_rate / loader_rate:.1%} of training time")
    elapsed, peak = run_measured([sys.executable, str(ROOT / "02_train_vae.py"), "--data-dir", str(rollout),
                                  "--checkpoint-dir", str(scratch / "vae"), "--epochs", "1"], seconds / 2)
    print(f"  stage 02 peak memory: {peak:.2f} GB (first {elapsed:.0f} s of an epoch on {frames} frames, "
          f"groups of {defaults.buffer_episodes} episodes)")


def report(what: str, baseline: float, ours: float, baseline_name: str, ours_name: str) -> None:
    print(f"{what}: {baseline_name} {baseline:,.0f}, {ours_name} {ours:,.0f}, ratio {ours / baseline:.1f}x", flush=True)


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended while being read
    return total


def run_measured(command: list[str], limit: float | None = None) -> tuple[float, float]:
    """Run ``command`` (stopping it after ``limit`` seconds); returns (seconds, peak GB)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started, peak = time.perf_counter(), 0
    while process.poll() is None:
        peak = max(peak, tree_rss_bytes(process.pid))
        if limit is not None and time.perf_counter() - started > limit:
            process.terminate()
            break
        time.sleep(0.2)
    _, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0 and limit is None:
        sys.exit(f"error: {' '.join(command[1:])} failed:\n{stderr[-2000:]}")
    return elapsed, peak / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-dir", default="checkpoints/small", help="trained V and M (vae.pt, mdrnn.pt)")
    parser.add_argument("--rollout-dir", default="data/small/rollout", help="real rollouts, linked into the stage 02 dataset")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--tracks", type=int, default=4, help="tracks per core for the env comparison")
    parser.add_argument("--steps", type=int, default=500, help="steps per episode (env, stage 01 and stage 05)")
    parser.add_argument("--episodes", type=int, default=64, help="episodes for stages 01 and 05")
    parser.add_argument("--vae-seconds", type=finite_float, default=240,
                        help="stage 02: seconds of training compared (alternating); half as long for its memory")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=["env", "stage05", "stage01", "stage02"],
                        help="what to measure (default: all but breakdown and scores)")
    parser.add_argument("--score-tracks", type=int, default=100, help="tracks for --parts scores")
    args = parser.parse_args()
    checkpoint_dir, rollout_dir = Path(args.checkpoint_dir), Path(args.rollout_dir)
    for path in (checkpoint_dir / VAE_FILE, checkpoint_dir / MDRNN_FILE):
        if not path.is_file():
            sys.exit(f"error: {path} not found; train V and M first (bash profiles/small.sh), or pass --checkpoint-dir")
    if "scores" in args.parts and not (checkpoint_dir / CONTROLLER_FILE).is_file():
        sys.exit(f"error: {checkpoint_dir / CONTROLLER_FILE} not found; --parts scores needs a trained controller")
    if "stage02" in args.parts and not list_episodes(rollout_dir):
        sys.exit(f"error: {rollout_dir}: no rollout files; run 01_generate_data.py first, or pass --rollout-dir")
    print(f"{args.workers} workers, torch {torch.__version__}, {os.cpu_count()} CPUs visible; action size {ACTION_SIZE}")
    (ROOT / "data").mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="benchmark-", dir=ROOT / "data"))  # same disk as the rollouts (hard links)
    try:
        with LocalPool(args.workers) as pool:
            if "env" in args.parts:
                compare_env(args.tracks, args.steps, pool)
            if "stage05" in args.parts:
                compare_stage05(checkpoint_dir, args.episodes, args.steps, pool, scratch)
            if "scores" in args.parts:
                compare_scores(checkpoint_dir, args.score_tracks, pool)
        if "breakdown" in args.parts:
            step_breakdown(checkpoint_dir, 32, args.steps)
        if "stage01" in args.parts:
            compare_stage01(args.episodes, args.steps, args.workers, scratch)
        if "stage02" in args.parts:
            compare_stage02(rollout_dir, checkpoint_dir, args.vae_seconds, scratch)
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
