"""Running CarRacing-v3 episodes: with the exploration policy (stage 01) or with the
agent V -> C -> M (stage 05 and evaluation).

The agent runs a batch of environments in lockstep: each step, V encodes all frames in one
batch, C acts for all of them in one batched matmul, and M advances all hidden states in one
LSTM step. Each environment may have its own controller parameters (CMA-ES candidates).
"""

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from worldmodels.checkpoints import CONTROLLER_FILE, MDRNN_FILE, VAE_FILE, fingerprint, load_controller_for, load_vae_and_mdrnn
from worldmodels.constants import ACTION_SIZE
from worldmodels.controller import LinearControllers
from worldmodels.env import make_env
from worldmodels.episodes import episode_id, write_rollout
from worldmodels.exploration import RandomWalkPolicy
from worldmodels.frames import FRAME_SIZE, frame_preparer, frames_to_tensor_layout, preprocess_frame
from worldmodels.mdrnn import MDNRNN, mixture_nll
from worldmodels.parallel import WorkerPool
from worldmodels.results import EpisodeResults
from worldmodels.vision import ActingEncoder, VisionModel


def collect_episode(seed: int, max_steps: int, fast_render: bool, act: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """One episode on track ``seed``, each action chosen by ``act`` from the preprocessed
    frame (uint8 [64, 64, 3] -> float32 [3]).

    returns the arrays of a rollout file but its source (see worldmodels.episodes)."""
    env = make_env(max_steps, fast_render)
    frame, _ = env.reset(seed=seed)
    obs, actions, rewards, terminateds, dones = [], [], [], [], []
    try:
        done = False
        while not done:
            obs.append(preprocess_frame(frame))
            action = act(obs[-1])
            frame, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            actions.append(action)
            rewards.append(reward)
            terminateds.append(terminated)
            dones.append(done)
    finally:
        env.close()
    return dict(obs=np.stack(obs), action=np.stack(actions), reward=np.asarray(rewards, np.float32),
                terminated=np.asarray(terminateds), done=np.asarray(dones))


def collect_exploration_episode(seed: int, max_steps: int, fast_render: bool = False) -> dict[str, np.ndarray]:
    """One episode on track ``seed`` driven by the exploration walk seeded with ``seed``."""
    walk = RandomWalkPolicy(np.random.default_rng(seed))
    return collect_episode(seed, max_steps, fast_render, lambda frame: walk())


@dataclass(frozen=True)
class AgentPolicy:
    """A saved agent that stage 01 collects with: V and M from their files and C's
    parameters, to which each episode adds Gaussian noise of std ``noise`` drawn from its
    seed (the way CMA-ES samples candidates around its mean, so the data covers where the
    search's candidates will drive; noise on the weights keeps an episode's driving
    consistent, where noise on each action would average out in the car's inertia)."""
    vae_path: str
    mdrnn_path: str
    params: np.ndarray  # float32 [P], C's parameters
    use_hidden: bool
    noise: float
    source: str  # what the episode files record as their source

    def collect(self, seed: int, max_steps: int, fast_render: bool = False) -> dict[str, np.ndarray]:
        vae, mdrnn = load_agent_models(self.vae_path, self.mdrnn_path)
        params = self.params + np.random.default_rng(seed).normal(0, self.noise, self.params.shape).astype(np.float32)
        agent, active = Agent(vae, mdrnn, params[None], self.use_hidden), np.ones(1, dtype=bool)
        return collect_episode(seed, max_steps, fast_render, lambda frame: agent.act(frame[None], active)[0])


def load_agent_policy(folder: str | Path, noise: float) -> AgentPolicy:
    """The V, M and C of ``folder`` (which must belong together) as a collection policy."""
    paths = [str(Path(folder) / name) for name in (VAE_FILE, MDRNN_FILE, CONTROLLER_FILE)]
    vae, mdrnn = load_agent_models(*paths[:2])
    controller, config = load_controller_for(paths[2], vae, mdrnn)
    params = controller["params"].numpy()
    source = (f"agent: controller {fingerprint({'params': torch.as_tensor(params)})} of {folder} (V {config['vae']}, "
              f"M {config['mdrnn']}), parameter noise {noise}")
    return AgentPolicy(*paths[:2], params, config["use_hidden"], noise, source)


def write_episode(seed: int, out_dir: str, max_steps: int, fast_render: bool = False, agent: AgentPolicy | None = None) -> int:
    """Collect episode ``seed`` with the exploration walk (or ``agent``) and write it to
    ``out_dir`` with its source; returns its number of steps."""
    if agent is None:
        episode, source = collect_exploration_episode(seed, max_steps, fast_render), "exploration"
    else:
        episode, source = agent.collect(seed, max_steps, fast_render), agent.source
    write_rollout(Path(out_dir) / f"{episode_id(seed)}.npz", **episode, source=source)
    return len(episode["action"])


class Agent:
    """V, M and a batch of linear controllers acting on B environments at once.

    use_hidden: C sees [z_t, h_t] (the paper's full agent) or z_t alone (its 'z only' agent).
    fast_acting: encode with ``ActingEncoder`` (bfloat16 where the CPU has it) instead of V's
    float32 encoder.
    """

    def __init__(self, vae: VisionModel, mdrnn: MDNRNN, params: np.ndarray, use_hidden: bool = True,
                 fast_acting: bool = False):
        self.vae, self.mdrnn, self.use_hidden = vae, mdrnn, use_hidden
        self.acting_encoder = ActingEncoder(vae) if fast_acting else None
        input_size = vae.z_size + (mdrnn.hidden_size if use_hidden else 0)
        self.controllers = LinearControllers(torch.as_tensor(params, dtype=torch.float32), input_size)
        self.state = mdrnn.initial_state(len(params))
        self.predicted_reward = np.zeros(len(params))  # M's reward head on each env's last action
        # M's surprise at each env's last frame: the NLL (nats per latent dimension) of V's z under
        # the mixture M predicted one step earlier (0 on the first step): curiosity's reward
        self.surprise = np.zeros(len(params))
        self.last_z: torch.Tensor | None = None  # V's z [A, Z] of the active envs' last frames
        self.last_prediction: dict[str, torch.Tensor] | None = None  # M's head outputs after them (the viewer shows these)
        self._predicted: dict[str, torch.Tensor] | None = None  # M's mixture for each env's next z, [B, Z, K] each

    @torch.no_grad()
    def act(self, frames: np.ndarray, active: np.ndarray) -> np.ndarray:
        """frames: uint8 [B, 64, 64, 3] (rows of finished envs are ignored), active: bool [B].
        returns actions float32 [B, 3] and advances M for the active environments (their
        predicted rewards for these actions go to ``predicted_reward``)."""
        index = torch.as_tensor(np.flatnonzero(active))
        if self.acting_encoder is not None:
            z = self.acting_encoder(torch.from_numpy(frames[index.numpy()]))
        else:
            z, _ = self.vae.encode(torch.as_tensor(frames_to_tensor_layout(frames[index.numpy()])))
        if self._predicted is not None:
            mixture = [self._predicted[k][index] for k in ("log_pi", "mu", "log_sigma")]
            self.surprise[active] = mixture_nll(*mixture, z).mean(-1).numpy()
        h = self.state[0][0, index]
        features = torch.cat([z, h], dim=1) if self.use_hidden else z
        actions = self.controllers(features, rows=index)
        out, (h_next, c_next) = self.mdrnn.step(z, actions, (self.state[0][:, index], self.state[1][:, index]))
        self.state[0][:, index], self.state[1][:, index] = h_next, c_next
        self.predicted_reward[active] = out["reward"].numpy()
        self.last_z, self.last_prediction = z, out
        if self._predicted is None:
            self._predicted = {k: torch.zeros((len(active), *out[k].shape[1:])) for k in ("log_pi", "mu", "log_sigma")}
        for key, predicted in self._predicted.items():
            predicted[index] = out[key]
        out = np.zeros((len(active), ACTION_SIZE), dtype=np.float32)
        out[active] = actions.numpy()
        return out


def run_agent_episodes(
    vae: VisionModel, mdrnn: MDNRNN, params: np.ndarray, seeds: list[int], max_steps: int,
    patience: int = 0, use_hidden: bool = True, fast_render: bool = False, fast_acting: bool = False,
) -> EpisodeResults:
    """Run episode i on track seeds[i] with controller params[i], all in lockstep.

    patience > 0 ends an episode early after that many steps in a row without a positive
    reward (training only: it saves the time of cars that are lost; 0 runs full episodes).
    fast_acting (with fast_render): the envs draw V's 64x64 frames directly and V encodes
    them with ``ActingEncoder``; the same physics and rewards, slightly different frames."""
    batch = len(seeds)
    envs = [make_env(max_steps, fast_render, agent_frames=fast_acting) for _ in range(batch)]  # refuses agent frames on stock
    prepare = frame_preparer(fast_acting)
    agent = Agent(vae, mdrnn, params, use_hidden, fast_acting)
    frames = np.zeros((batch, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    returns, predicted_returns, surprise = np.zeros(batch), np.zeros(batch), np.zeros(batch)
    steps = np.zeros(batch, dtype=np.int64)
    since_progress = np.zeros(batch, dtype=np.int64)
    active = np.ones(batch, dtype=bool)
    try:
        for i, (env, seed) in enumerate(zip(envs, seeds)):
            frames[i] = prepare(env.reset(seed=int(seed))[0])
        while active.any():
            actions = agent.act(frames, active)
            predicted_returns[active] += agent.predicted_reward[active]
            surprise[active] += agent.surprise[active]
            for i in np.flatnonzero(active):
                frame, reward, terminated, truncated, _ = envs[i].step(actions[i])
                returns[i] += reward
                steps[i] += 1
                since_progress[i] = 0 if reward > 0 else since_progress[i] + 1
                if terminated or truncated or (patience and since_progress[i] >= patience):
                    active[i] = False
                else:
                    frames[i] = prepare(frame)
    finally:
        for env in envs:
            env.close()
    return EpisodeResults(returns, steps, predicted_returns, surprise)


def load_agent_models(vae_path: str, mdrnn_path: str) -> tuple[VisionModel, MDNRNN]:
    """V and M from their checkpoints, loaded once per process and version of the files
    (workers reuse them; a checkpoint rewritten since is loaded again); M must have been
    trained on this V's latents."""
    return _load_agent_models(vae_path, mdrnn_path, _file_version(vae_path), _file_version(mdrnn_path))


def _file_version(path: str) -> tuple[int, int] | None:
    """Changes whenever the file is replaced (an atomic write gives it a new inode)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None  # load_model says which stage makes it
    return stat.st_mtime_ns, stat.st_ino


@lru_cache(maxsize=2)
def _load_agent_models(vae_path: str, mdrnn_path: str, *versions) -> tuple[VisionModel, MDNRNN]:
    return load_vae_and_mdrnn(vae_path, mdrnn_path)


@dataclass(frozen=True)
class AgentJob:
    """A picklable unit of work for a worker: episodes of controllers on tracks."""
    vae_path: str
    mdrnn_path: str
    params: np.ndarray  # [B, P]
    seeds: tuple[int, ...]  # [B]
    max_steps: int
    patience: int = 0
    use_hidden: bool = True
    fast_render: bool = False
    fast_acting: bool = False


def run_agent_job(job: AgentJob) -> EpisodeResults:
    vae, mdrnn = load_agent_models(job.vae_path, job.mdrnn_path)
    return run_agent_episodes(vae, mdrnn, job.params, list(job.seeds), job.max_steps, job.patience, job.use_hidden,
                              job.fast_render, job.fast_acting)


def run_agent_parallel(
    pool: WorkerPool, vae_path: str, mdrnn_path: str, params: np.ndarray, seeds: list[int], max_steps: int,
    patience: int = 0, use_hidden: bool = True, fast_render: bool = False, max_envs_per_job: int = 64,
    desc: str | None = None, fast_acting: bool = False,
) -> EpisodeResults:
    """Episode i runs controller params[i] on track seeds[i]; episodes are split into jobs
    (several per worker, so a worker whose cars finish early takes another job) and each
    job steps its environments in lockstep with batched V, M and C."""
    count = len(seeds)
    per_job = max(1, min(max_envs_per_job, -(-count // (2 * pool.workers))))
    jobs = [AgentJob(vae_path, mdrnn_path, params[i : i + per_job], tuple(int(s) for s in seeds[i : i + per_job]),
                     max_steps, patience, use_hidden, fast_render, fast_acting) for i in range(0, count, per_job)]
    results = pool.map(run_agent_job, jobs, desc=desc)
    return EpisodeResults(*(np.concatenate([getattr(r, field) for r in results])
                            for field in ("returns", "steps", "predicted_returns", "surprise")))
