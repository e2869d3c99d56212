"""How close the fast renderer's frames are to stock, in pixels and in V's latent space.

Each track is driven in the stock env; the fast env replays the same actions, so both go
through the same states (same physics) and only their pictures differ. Two drivers:
the exploration random walk (stage 01's states) and the trained agent V -> C -> M acting
on the stock frames (stage 05's states, mostly on the road). For every state it compares
the preprocessed 64x64 frames:

- mean absolute pixel error per channel (target: at most 3 of 255);
- ||mu_fast - mu_stock|| in V's latent space against ||mu_stock(t+1) - mu_stock(t)||, the
  distance between consecutive stock frames: how the rendering difference compares with
  what one step of driving changes.

It also writes a picture: stock frames (top), fast frames (middle), and their absolute
difference x8 (bottom), for the worst frames of each driver. With --agent-frames the fast
env draws the 64x64 frames directly (stage 05's fast acting) instead of 96x96 frames that
are then preprocessed. Usage:

    python benchmarks/fast_env_fidelity.py --checkpoint-dir checkpoints/small --tracks 10 [--agent-frames]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worldmodels.checkpoints import CONTROLLER_FILE, MDRNN_FILE, VAE_FILE, controller_inputs, load_checkpoint, load_vae_and_mdrnn  # noqa: E402
from worldmodels.env import RETIRED_SEED_BASE, make_env  # noqa: E402
from worldmodels.exploration import RandomWalkPolicy  # noqa: E402
from worldmodels.frames import frame_preparer, frames_to_tensor_layout  # noqa: E402
from worldmodels.rollout import Agent  # noqa: E402
from worldmodels.vision import ConvVAE  # noqa: E402

FIRST_SEED = RETIRED_SEED_BASE + 500_000  # retired tracks: the figures measured on them stay reproducible


def drive(seed: int, steps: int, agent: Agent | None, agent_frames: bool, frame_kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Stock and fast preprocessed frames of ``frame_kind``, uint8 [T, 64, 64, 3] each, of one
    episode on track ``seed``, driven by ``agent`` (on stock frames) or, without one, by the
    random walk."""
    stock, fast = make_env(steps), make_env(steps, fast_render=True, agent_frames=agent_frames, frame_kind=frame_kind)
    prepare = {stock: frame_preparer(False, frame_kind), fast: frame_preparer(agent_frames, frame_kind)}
    policy = RandomWalkPolicy(np.random.default_rng(seed))
    frames = {env: [prepare[env](env.reset(seed=seed)[0])] for env in (stock, fast)}
    try:
        for _ in range(steps):
            if agent is None:
                action = policy()
            else:
                action = agent.act(frames[stock][-1][None], np.ones(1, dtype=bool))[0]
            outcomes = []
            for env in (stock, fast):
                frame, reward, terminated, truncated, _ = env.step(action)
                frames[env].append(prepare[env](frame))
                outcomes.append((reward, terminated, truncated))
            if outcomes[0] != outcomes[1]:
                raise AssertionError(f"track {seed}: stock and fast envs diverged: {outcomes}")
            if outcomes[0][1] or outcomes[0][2]:
                break
    finally:
        stock.close()
        fast.close()
    return np.stack(frames[stock]), np.stack(frames[fast])


@torch.no_grad()
def latent_means(vae: ConvVAE, frames: np.ndarray) -> np.ndarray:
    return np.concatenate([vae.encode(torch.from_numpy(frames_to_tensor_layout(frames[i : i + 500])))[0].numpy()
                           for i in range(0, len(frames), 500)])


def summarise(name: str, vae: ConvVAE, pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    stock = np.concatenate([s for s, _ in pairs])
    fast = np.concatenate([f for _, f in pairs])
    error = np.abs(stock.astype(np.int16) - fast.astype(np.int16))
    per_frame = error.mean(axis=(1, 2, 3))
    per_channel = error.mean(axis=(0, 1, 2))
    print(f"{name}: {len(pairs)} tracks, {len(stock)} states")
    print(f"  mean absolute pixel error: {error.mean():.3f} of 255 (R {per_channel[0]:.3f}, G {per_channel[1]:.3f}, "
          f"B {per_channel[2]:.3f}); per frame: median {np.median(per_frame):.3f}, "
          f"99th percentile {np.percentile(per_frame, 99):.3f}, worst {per_frame.max():.3f}")
    render_gap, step_gap = [], []
    for s, f in pairs:
        mu_stock, mu_fast = latent_means(vae, s), latent_means(vae, f)
        render_gap.append(np.linalg.norm(mu_fast - mu_stock, axis=1)[:-1])
        step_gap.append(np.linalg.norm(mu_stock[1:] - mu_stock[:-1], axis=1))
    render_gap, step_gap = np.concatenate(render_gap), np.concatenate(step_gap)
    print(f"  V latent distance (mu), fast vs stock: mean {render_gap.mean():.3f}, median {np.median(render_gap):.3f}; "
          f"consecutive stock frames: mean {step_gap.mean():.3f}, median {np.median(step_gap):.3f}; "
          f"ratio of means {render_gap.mean() / step_gap.mean():.2f}; "
          f"fast-vs-stock closer than one step in {np.mean(render_gap < step_gap):.0%} of states")
    worst = np.argsort(per_frame)[-4:]
    return stock[worst], fast[worst]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-dir", default="checkpoints/small", help="V, M and C (vae.pt, mdrnn.pt, controller.pt)")
    parser.add_argument("--tracks", type=int, default=10, help="tracks per driver")
    parser.add_argument("--steps", type=int, default=1000, help="steps per track at most")
    parser.add_argument("--agent-frames", action="store_true", help="the fast env draws 64x64 frames directly")
    parser.add_argument("--picture", default=None, help="default: benchmarks/results/fast_vs_stock.png "
                        "(agent_frames_vs_stock.png with --agent-frames)")
    args = parser.parse_args()
    paths = {name: Path(args.checkpoint_dir) / name for name in (VAE_FILE, MDRNN_FILE, CONTROLLER_FILE)}
    for path in paths.values():
        if not path.is_file():
            sys.exit(f"error: {path} not found; train the agent first (bash profiles/small.sh), or pass --checkpoint-dir")
    vae, mdrnn = load_vae_and_mdrnn(str(paths[VAE_FILE]), str(paths[MDRNN_FILE]))
    controller = load_checkpoint(str(paths[CONTROLLER_FILE]), "controller", "05_train_controller.py")
    seeds = range(FIRST_SEED, FIRST_SEED + args.tracks)
    shown = []
    for name, make_agent in (
        ("random-walk driver", lambda: None),
        ("trained agent", lambda: Agent(vae, mdrnn, controller["params"].numpy()[None], controller_inputs(controller["config"]))),
    ):
        pairs = [drive(seed, args.steps, make_agent(), args.agent_frames, vae.frame_kind) for seed in seeds]
        shown.append(summarise(name, vae, pairs))
    stock = np.concatenate([s for s, _ in shown])
    fast = np.concatenate([f for _, f in shown])
    difference = np.minimum(np.abs(stock.astype(np.int16) - fast.astype(np.int16)) * 8, 255).astype(np.uint8)
    grid = np.concatenate([np.concatenate(list(rows), axis=1) for rows in (stock, fast, difference)], axis=0)
    picture = Path(args.picture or f"benchmarks/results/{'agent_frames' if args.agent_frames else 'fast'}_vs_stock.png")
    picture.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.Resampling.NEAREST).save(picture)
    print(f"wrote {picture}: stock (top), fast (middle), |difference| x8 (bottom); worst 4 frames of each driver")


if __name__ == "__main__":
    main()
