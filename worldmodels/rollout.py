"""Running CarRacing-v3 episodes: with the exploration policy (stage 01) or with the
agent V -> C -> M (stage 05 and evaluation).

The agent runs a batch of environments in lockstep: each step, V encodes all frames in one
batch, C acts for all of them in one batched matmul, and M advances all hidden states in one
LSTM step. Each environment may have its own controller parameters (CMA-ES candidates).
"""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from worldmodels.checkpoints import (CONTROLLER_FILE, MDRNN_FILE, VAE_FILE, build_model, controller_inputs, fingerprint,
                                     load_controller_for, load_vae_and_mdrnn, model_checkpoint)
from worldmodels.constants import ACTION_SIZE
from worldmodels.controller import LinearControllers, controller_features, controller_input_size
from worldmodels.env import make_env
from worldmodels.episodes import AGENT_SOURCE, episode_id, rollout_bytes
from worldmodels.exploration import RandomWalkPolicy
from worldmodels.frames import FRAME_SIZE, FULL_FRAME, PAPER_FRAME, frame_preparer, frames_to_tensor_layout, preprocess_frame
from worldmodels.mdrnn import MDNRNN, mixture_nll
from worldmodels.parallel import Shared, WorkerPool
from worldmodels.results import EpisodeResults
from worldmodels.vision import ActingEncoder, VisionModel


def collect_episode(seed: int, max_steps: int, fast_render: bool, act: Callable[[np.ndarray], np.ndarray],
                    frame_kind: str = PAPER_FRAME, act_kind: str | None = None) -> dict[str, np.ndarray]:
    """One episode on track ``seed`` whose frames are recorded in kind ``frame_kind``
    (frames.FRAME_KINDS), each action chosen by ``act`` from the frame of kind ``act_kind``
    (default: the recorded kind), preprocessed (uint8 [64, 64, 3] -> float32 [3]).

    returns the arrays of a rollout file but its source and kind of frame (see
    worldmodels.episodes), with the car's true speed and tiles reached before each action."""
    act_kind = act_kind or frame_kind
    # a full frame's crop is the paper's frame, so one env frame serves both kinds
    env = make_env(max_steps, fast_render, frame_kind=FULL_FRAME if FULL_FRAME in (frame_kind, act_kind) else PAPER_FRAME)
    frame, _ = env.reset(seed=seed)
    obs, actions, rewards, terminateds, dones, speeds, tiles = [], [], [], [], [], [], []
    try:
        done = False
        while not done:
            obs.append(preprocess_frame(frame, frame_kind))
            speeds.append(float(np.linalg.norm(env.unwrapped.car.hull.linearVelocity)))
            tiles.append(env.unwrapped.tile_visited_count)
            action = act(obs[-1] if act_kind == frame_kind else preprocess_frame(frame, act_kind))
            frame, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            actions.append(action)
            rewards.append(reward)
            terminateds.append(terminated)
            dones.append(done)
    finally:
        env.close()
    return dict(obs=np.stack(obs), action=np.stack(actions), reward=np.asarray(rewards, np.float32),
                terminated=np.asarray(terminateds), done=np.asarray(dones), speed=np.asarray(speeds, np.float32),
                tiles=np.asarray(tiles, np.int32))


def collect_exploration_episode(seed: int, max_steps: int, fast_render: bool = False,
                                frame_kind: str = PAPER_FRAME) -> dict[str, np.ndarray]:
    """One episode on track ``seed`` driven by the exploration walk seeded with ``seed``."""
    walk = RandomWalkPolicy(np.random.default_rng(seed))
    return collect_episode(seed, max_steps, fast_render, lambda frame: walk(), frame_kind)


DETOUR_STEPS = (20, 80)  # shortest and longest detour, in steps (the exploration walk's stops and sprints are alike)


class Detours:
    """Now and then the exploration walk takes the wheel: each step outside a detour starts
    one with chance ``chance``, lasting DETOUR_STEPS. Drawn from the track seed alone, so
    every controller driven on a track is sent off at the same steps with the same actions."""

    def __init__(self, seed: int, chance: float):
        self.chance, self.left = chance, 0
        self.chances, self.walk = np.random.default_rng([seed, 1]), RandomWalkPolicy(np.random.default_rng([seed, 2]))

    def next_action(self) -> np.ndarray | None:
        """The walk's action float32 [3] for this step, or None where C drives."""
        if self.chance and self.left == 0 and self.chances.random() < self.chance:
            self.left = int(self.chances.integers(DETOUR_STEPS[0], DETOUR_STEPS[1] + 1))
        if self.left == 0:
            return None
        self.left -= 1
        return self.walk()


@dataclass(frozen=True)
class TrainingEpisodes:
    """What only a search's training episodes do; checks and evaluations run plain episodes
    (the defaults)."""
    patience: int = 0  # end an episode after this many steps in a row without a new tile (0: never)
    detours: float = 0.0  # chance per step of a detour (Detours): C learns to come back to the road (0: never)


PLAIN_EPISODES = TrainingEpisodes()


@dataclass(frozen=True)
class AgentPolicy:
    """A saved agent that stage 01 collects with: V and M from their files and C's
    parameters, to which each episode adds Gaussian noise of std ``noise`` drawn from its
    seed (the way CMA-ES samples candidates around its mean, so the data covers where the
    search's candidates will drive; noise on the weights keeps an episode's driving
    consistent, where noise on each action would average out in the car's inertia).
    With ``detours`` > 0, each step starts with that chance a detour: the exploration walk
    drives for DETOUR_STEPS (M is told the walk's actions, so C's h stays true)."""
    models: Shared  # V and M (share_agent_models)
    params: np.ndarray  # float32 [P], C's parameters
    inputs: str  # what C reads (controller.CONTROLLER_INPUTS)
    noise: float
    source: str  # what the episode files record as their source
    detours: float = 0.0
    frame_kind: str = PAPER_FRAME  # the kind of frame its V sees

    def collect(self, seed: int, max_steps: int, fast_render: bool = False,
                record_kind: str | None = None) -> dict[str, np.ndarray]:
        """One episode driven on frames of its V's kind, recorded in ``record_kind`` (default: the same)."""
        vae, mdrnn = agent_models(self.models)
        params = self.params + np.random.default_rng(seed).normal(0, self.noise, self.params.shape).astype(np.float32)
        agent, active = Agent(vae, mdrnn, params[None], self.inputs), np.ones(1, dtype=bool)
        detours = Detours(seed, self.detours)

        def act(frame: np.ndarray) -> np.ndarray:
            walked = detours.next_action()
            return agent.act(frame[None], active, taken=None if walked is None else walked[None])[0]

        return collect_episode(seed, max_steps, fast_render, act, record_kind or self.frame_kind, self.frame_kind)


def load_agent_policy(folder: str | Path, noise: float, pool: WorkerPool, detours: float = 0.0) -> AgentPolicy:
    """The V, M and C of ``folder`` (which must belong together) as a collection policy
    whose V and M the workers of ``pool`` read from ``pool.share``."""
    vae, mdrnn = load_vae_and_mdrnn(Path(folder) / VAE_FILE, Path(folder) / MDRNN_FILE)
    controller, config = load_controller_for(Path(folder) / CONTROLLER_FILE, vae, mdrnn)
    params = controller["params"].numpy()
    source = (f"{AGENT_SOURCE} controller {fingerprint({'params': torch.as_tensor(params)})} of {folder} (V {config['vae']}, "
              f"M {config['mdrnn']}), parameter noise {noise}" + (f", detours {detours}" if detours else ""))
    return AgentPolicy(share_agent_models(pool, vae, mdrnn), params, controller_inputs(config), noise, source, detours,
                       vae.frame_kind)


@dataclass(frozen=True)
class EpisodeFile:
    """A collected episode as the bytes of its rollout file, for the driver to write."""
    name: str  # ep<seed>.npz
    data: bytes
    steps: int


def collect_episode_file(seed: int, max_steps: int, fast_render: bool = False, agent: AgentPolicy | None = None,
                         frame_kind: str = PAPER_FRAME) -> EpisodeFile:
    """Collect episode ``seed`` with the exploration walk (or ``agent``, which drives on its own
    V's kind of frame) as its rollout file of ``frame_kind`` frames, which records its source
    and frame; the compression is done here, in the worker."""
    if agent is None:
        episode, source = collect_exploration_episode(seed, max_steps, fast_render, frame_kind), "exploration"
    else:
        episode, source = agent.collect(seed, max_steps, fast_render, frame_kind), agent.source
        if frame_kind != agent.frame_kind:
            source += f", driving on {agent.frame_kind} frames"
    name = f"{episode_id(seed)}.npz"
    return EpisodeFile(name, rollout_bytes(name, **episode, source=source, frame_kind=frame_kind), len(episode["action"]))


class Agent:
    """V, M and a batch of linear controllers acting on B environments at once.

    inputs: what C reads (controller.CONTROLLER_INPUTS): [z_t, h_t] (the paper's full agent), z_t
    alone (its 'z only' agent) or [z_t, h_t, c_t], with M's cell state.
    fast_acting: encode with ``ActingEncoder`` instead of V's float32 encoder, in bfloat16 if
    ``bfloat16`` (None: where this CPU has it).
    """

    def __init__(self, vae: VisionModel, mdrnn: MDNRNN, params: np.ndarray, inputs: str = "zh",
                 fast_acting: bool = False, bfloat16: bool | None = None):
        self.vae, self.mdrnn, self.inputs = vae, mdrnn, inputs
        self.acting_encoder = ActingEncoder(vae, bfloat16) if fast_acting else None
        input_size = controller_input_size(inputs, vae.z_size, mdrnn.hidden_size)
        self.controllers = LinearControllers(torch.tensor(params, dtype=torch.float32), input_size)  # a copy: params may be read-only
        self.state = mdrnn.initial_state(len(params))
        self.predicted_reward = np.zeros(len(params))  # M's reward head on each env's last action
        # M's surprise at each env's last frame: the NLL (nats per latent dimension) of V's z under
        # the mixture M predicted one step earlier (0 on the first step): curiosity's reward
        self.surprise = np.zeros(len(params))
        self.last_z: torch.Tensor | None = None  # V's z [A, Z] of the active envs' last frames
        self.last_prediction: dict[str, torch.Tensor] | None = None  # M's head outputs after them (the viewer shows these)
        self._predicted: dict[str, torch.Tensor] | None = None  # M's mixture for each env's next z, [B, Z, K] each

    @torch.no_grad()
    def act(self, frames: np.ndarray, active: np.ndarray, taken: np.ndarray | None = None) -> np.ndarray:
        """frames: uint8 [B, 64, 64, 3] (rows of finished envs are ignored), active: bool [B].
        returns actions float32 [B, 3] and advances M for the active environments (their
        predicted rewards for these actions go to ``predicted_reward``). taken: float32
        [B, 3], the actions the envs will take instead of C's (rows of NaN: C's own), which M
        advances with and which are returned."""
        index = torch.as_tensor(np.flatnonzero(active))
        if self.acting_encoder is not None:
            z = self.acting_encoder(torch.from_numpy(frames[index.numpy()]))
        else:
            z, _ = self.vae.encode(torch.as_tensor(frames_to_tensor_layout(frames[index.numpy()])))
        if self._predicted is not None:
            mixture = [self._predicted[k][index] for k in ("log_pi", "mu", "log_sigma")]
            self.surprise[active] = mixture_nll(*mixture, z).mean(-1).numpy()
        features = controller_features(self.inputs, z, self.state[0][0, index], self.state[1][0, index])
        actions = self.controllers(features, rows=index)
        if taken is not None:
            given = torch.as_tensor(taken, dtype=torch.float32)[index]
            actions = torch.where(given.isnan(), actions, given)
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


def walked_actions(detours: list[Detours], active: np.ndarray) -> np.ndarray:
    """float32 [B, 3]: the walk's action where an active episode is in a detour, NaN elsewhere."""
    taken = np.full((len(detours), ACTION_SIZE), np.nan, dtype=np.float32)
    for i in np.flatnonzero(active):
        if (walked := detours[i].next_action()) is not None:
            taken[i] = walked
    return taken


def run_agent_episodes(
    vae: VisionModel, mdrnn: MDNRNN, params: np.ndarray, seeds: list[int], max_steps: int,
    training: TrainingEpisodes = PLAIN_EPISODES, inputs: str = "zh", fast_render: bool = False, fast_acting: bool = False,
    record_actions: bool = False, bfloat16: bool | None = None,
) -> EpisodeResults:
    """Run episode i on track seeds[i] with controller params[i], all in lockstep.

    training: what a search's training episodes do beside driving (TrainingEpisodes: end early
    without progress, detours); the default runs plain episodes.
    fast_acting (with fast_render): the envs draw V's 64x64 frames directly and V encodes
    them with ``ActingEncoder`` (in bfloat16 if ``bfloat16``; None: where this CPU has it); the
    same physics and rewards, slightly different frames.
    record_actions: the results hold every episode's actions, so it can be replayed exactly."""
    batch = len(seeds)
    # V's kind of frame; refuses agent frames on stock
    envs = [make_env(max_steps, fast_render, agent_frames=fast_acting, frame_kind=vae.frame_kind) for _ in range(batch)]
    prepare = frame_preparer(fast_acting, vae.frame_kind)
    agent = Agent(vae, mdrnn, params, inputs, fast_acting, bfloat16)
    frames = np.zeros((batch, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    returns, predicted_returns, surprise = np.zeros(batch), np.zeros(batch), np.zeros(batch)
    steps = np.zeros(batch, dtype=np.int64)
    laps = np.zeros(batch, dtype=bool)
    since_progress = np.zeros(batch, dtype=np.int64)
    active = np.ones(batch, dtype=bool)
    taken = [[] for _ in range(batch)] if record_actions else None
    detours = [Detours(seed, training.detours) for seed in seeds] if training.detours else None
    try:
        for i, (env, seed) in enumerate(zip(envs, seeds)):
            frames[i] = prepare(env.reset(seed=int(seed))[0])
        while active.any():
            actions = agent.act(frames, active, None if detours is None else walked_actions(detours, active))
            predicted_returns[active] += agent.predicted_reward[active]
            surprise[active] += agent.surprise[active]
            for i in np.flatnonzero(active):
                frame, reward, terminated, truncated, info = envs[i].step(actions[i])
                laps[i] = bool(terminated and info.get("lap_finished", False))
                if taken is not None:
                    taken[i].append(actions[i])
                returns[i] += reward
                steps[i] += 1
                since_progress[i] = 0 if reward > 0 else since_progress[i] + 1
                if terminated or truncated or (training.patience and since_progress[i] >= training.patience):
                    active[i] = False
                else:
                    frames[i] = prepare(frame)
    finally:
        for env in envs:
            env.close()
    recorded = None if taken is None else [np.array(episode, dtype=np.float32).reshape(-1, ACTION_SIZE) for episode in taken]
    return EpisodeResults(returns, steps, predicted_returns, surprise, recorded, laps, since_progress)


def share_agent_models(pool: WorkerPool, vae: VisionModel, mdrnn: MDNRNN) -> Shared:
    """V's and M's weights (loaded and checked by the driver) put once where the pool's
    workers read them: workers never open the checkpoint files."""
    return pool.share({"vae": model_checkpoint(vae.kind, vae, getattr(vae, "made_from", {})),
                       "mdrnn": model_checkpoint("mdrnn", mdrnn, getattr(mdrnn, "made_from", {}))})


@lru_cache(maxsize=2)
def agent_models(models: Shared) -> tuple[VisionModel, MDNRNN]:
    """V and M from ``share_agent_models``, rebuilt once per process (workers reuse them
    for every task that carries the same handle)."""
    payload = models.get()
    return build_model(payload["vae"], "V shared by the driver"), build_model(payload["mdrnn"], "M shared by the driver")


@dataclass(frozen=True)
class AgentJob:
    """A picklable unit of work for a worker: episodes of controllers on tracks."""
    models: Shared  # V and M (share_agent_models)
    params: np.ndarray  # [B, P]
    seeds: tuple[int, ...]  # [B]
    max_steps: int
    training: TrainingEpisodes = PLAIN_EPISODES
    inputs: str = "zh"
    fast_render: bool = False
    fast_acting: bool = False
    record_actions: bool = False
    bfloat16: bool | None = None  # fast acting's precision, decided once by the driver (None: each worker's CPU)


def run_agent_job(job: AgentJob) -> EpisodeResults:
    vae, mdrnn = agent_models(job.models)
    return run_agent_episodes(vae, mdrnn, job.params, list(job.seeds), job.max_steps, job.training, job.inputs,
                              job.fast_render, job.fast_acting, job.record_actions, job.bfloat16)


def run_agent_parallel(
    pool: WorkerPool, models: Shared, params: np.ndarray, seeds: list[int], max_steps: int,
    training: TrainingEpisodes = PLAIN_EPISODES, inputs: str = "zh", fast_render: bool = False, max_envs_per_job: int = 64,
    desc: str | None = None, fast_acting: bool = False, record_actions: bool = False, bfloat16: bool | None = None,
) -> EpisodeResults:
    """Episode i runs controller params[i] on track seeds[i]; episodes are split into jobs
    (several per worker, so a worker whose cars finish early takes another job) and each
    job steps its environments in lockstep with batched V, M and C. ``models``: V and M from
    ``share_agent_models`` on this pool."""
    count = len(seeds)
    per_job = max(1, min(max_envs_per_job, -(-count // (2 * pool.workers))))
    jobs = [AgentJob(models, params[i : i + per_job], tuple(int(s) for s in seeds[i : i + per_job]),
                     max_steps, training, inputs, fast_render, fast_acting, record_actions, bfloat16)
            for i in range(0, count, per_job)]
    results = pool.map(run_agent_job, jobs, desc=desc)
    joined = {field: np.concatenate([getattr(r, field) for r in results])
              for field in ("returns", "steps", "predicted_returns", "surprise", "laps", "steps_since_last_tile")}
    return EpisodeResults(**joined, actions=[a for r in results for a in r.actions] if record_actions else None)
