"""How much of the car's speed V's z and M's h hold: the question behind a dream's reward.

A lap pays by how fast it is driven (each new tile pays, each step costs 0.1), but the agent's
64x64 frame is cropped above the indicator bar that shows the speed. This drives a saved
agent (every other episode with parameter noise, for a range of speeds), records z, h and the
true speed (the hull's velocity, which the agent never sees), and fits probes from z, from z
and the next z, from h and from z and h to the speed on some episodes, scored (R^2) on the
others. A probe that cannot tell the speed means neither can M's reward head, which reads h.
One process, one thread, the fast renderer with fast acting. Usage:

    python benchmarks/speed_probe.py --checkpoint-dir pretrained
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.checkpoints import CONTROLLER_FILE, MDRNN_FILE, VAE_FILE, load_controller_for, load_vae_and_mdrnn  # noqa: E402
from worldmodels.env import make_env  # noqa: E402
from worldmodels.rollout import Agent  # noqa: E402

ZOOM_STEPS = 60  # left out: the first second's zoom-in, while the car stands at the start
FEATURES = ("z", "z, next z", "h", "z, h")


def drive(checkpoint_dir: Path, episodes: int, steps: int, noise: float, first_track: int) -> list[dict[str, np.ndarray]]:
    """Per episode: z [T, Z], the next z [T, Z], h before acting [T, H] and speed [T]."""
    vae, mdrnn = load_vae_and_mdrnn(checkpoint_dir / VAE_FILE, checkpoint_dir / MDRNN_FILE)
    params = load_controller_for(checkpoint_dir / CONTROLLER_FILE, vae, mdrnn)[0]["params"].numpy()
    rng = np.random.default_rng(0)
    recorded = []
    for episode in tqdm(range(episodes), desc="episodes"):
        noisy = params + (rng.normal(0, noise, params.shape) if episode % 2 else 0)
        agent = Agent(vae, mdrnn, noisy[None].astype(np.float32), fast_acting=True)
        env = make_env(steps, fast_render=True, agent_frames=True)
        frame, _ = env.reset(seed=first_track + episode)
        z, h, speed = [], [], []
        for _ in range(steps):
            h.append(agent.state[0][0, 0].numpy().copy())
            action = agent.act(frame[None], np.ones(1, dtype=bool))
            z.append(agent.last_z[0].numpy())
            speed.append(float(np.linalg.norm(env.unwrapped.car.hull.linearVelocity)))
            frame, _, terminated, truncated, _ = env.step(action[0])
            if terminated or truncated:
                break
        env.close()
        z = np.array(z)
        recorded.append({"z": z, "next z": np.vstack([z[1:], z[-1:]]), "h": np.array(h), "speed": np.array(speed)})
    return recorded


def design(episodes: list[dict[str, np.ndarray]], features: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs [N, F] and speeds [N] after the zoom-in."""
    x = np.vstack([np.hstack([e[name] for name in features.split(", ")])[ZOOM_STEPS:] for e in episodes])
    return x, np.concatenate([e["speed"][ZOOM_STEPS:] for e in episodes])


def r_squared(predicted: np.ndarray, target: np.ndarray) -> float:
    return float(1 - ((predicted - target) ** 2).sum() / ((target - target.mean()) ** 2).sum())


def linear_probe(x: np.ndarray, y: np.ndarray, ridge: float = 1e-2):
    x1 = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.solve(x1.T @ x1 + ridge * np.eye(x1.shape[1]), x1.T @ y)
    return lambda inputs: np.hstack([inputs, np.ones((len(inputs), 1))]) @ w


def mlp_probe(x: np.ndarray, y: np.ndarray, iterations: int = 3000):
    torch.manual_seed(0)
    inputs, target = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    mean, std = inputs.mean(0), inputs.std(0) + 1e-6
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 128), torch.nn.ReLU(), torch.nn.Linear(128, 1))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(iterations):
        batch = torch.randint(0, len(inputs), (256,))
        loss = (net((inputs[batch] - mean) / std).squeeze(-1) - target[batch]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def predict(new: np.ndarray) -> np.ndarray:
        return net((torch.tensor(new, dtype=torch.float32) - mean) / std).squeeze(-1).numpy()
    return predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-dir", default="pretrained", help="V, M and C of an agent")
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--held-out", type=int, default=6, help="the last episodes, scored and never fitted")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--noise", type=float, default=0.1, help="parameter noise on every other episode")
    parser.add_argument("--first-track", type=int, default=40_000_000)
    args = parser.parse_args()
    if not 0 < args.held_out < args.episodes:
        sys.exit(f"error: --held-out must be between 1 and --episodes - 1 ({args.episodes - 1}), got {args.held_out}")
    torch.set_num_threads(1)
    episodes = drive(Path(args.checkpoint_dir), args.episodes, args.steps, args.noise, args.first_track)
    train, test = episodes[:-args.held_out], episodes[-args.held_out:]
    speeds = np.concatenate([e["speed"][ZOOM_STEPS:] for e in test])
    print(f"{len(train)} episodes fitted, {len(test)} held out (speed {speeds.mean():.1f} ± {speeds.std():.1f})")
    print("| probe of the speed from | linear R^2, fitted episodes | linear R^2, held out | MLP R^2, held out |\n|---|---|---|---|")
    for features in FEATURES:
        (x, y), (x_test, y_test) = design(train, features), design(test, features)
        linear = linear_probe(x, y)
        print(f"| {features} | {r_squared(linear(x), y):.2f} | {r_squared(linear(x_test), y_test):.2f} | "
              f"{r_squared(mlp_probe(x, y)(x_test), y_test):.2f} |", flush=True)


if __name__ == "__main__":
    main()
