"""Where stage 05's controllers drive: real tracks (batched episodes in worker processes) and
M's dreams (in this process). The search and the evaluation both drive through one of these,
so a real episode or a dream means the same in both."""

import copy
from dataclasses import dataclass, field

import numpy as np

from worldmodels.dream import DreamBatch, ZCharge, run_dream_episodes, start_indices
from worldmodels.dream_gradient import GradientState, ascend_in_dreams
from worldmodels.mdrnn import MDNRNN
from worldmodels.parallel import Shared, WorkerPool
from worldmodels.results import EpisodeResults
from worldmodels.rollout import PLAIN_EPISODES, TrainingEpisodes, run_agent_parallel, share_agent_models
from worldmodels.vision import VisionModel, acting_in_bfloat16


@dataclass
class Worlds:
    """V and M of a checkpoint folder, the pool that drives real tracks (its workers read V
    and M from ``pool.share``), and what a dream needs.

    starts: float32 [N, Z], real latents dreams start from (None: no dreams): first frames, or
    with start_states, mid-episode frames that dreams branch from (dream.branch_starts);
    start_states: each model's (h, c) float32 [N, H] at those frames (None: the zero state);
    dream_steps: a dream's length at most (0: max_steps);
    members: M's ensemble members the dream also runs (DreamBatch), and what it charges for their
    disagreement: ``disagreement`` x the std of their rewards, and ``z_charge`` (ZCharge);
    dream_dropout: dreams draw dropout masks for the Ms trained with dropout (DreamBatch);
    device: where dreams run M and its members ("cpu" or "cuda"; real tracks always act on the
    workers' CPUs, beside the env each worker steps);
    fast_acting: real tracks draw V's 64x64 frames directly and V encodes them in bfloat16
    where the CPU has it (run_agent_episodes); whether it does is decided here, in the driver,
    once (``bfloat16``), and every worker acts so or refuses (ActingEncoder).
    """

    pool: WorkerPool
    vae: VisionModel
    mdrnn: MDNRNN
    max_steps: int
    inputs: str  # what C reads (controller.CONTROLLER_INPUTS)
    fast_render: bool
    temperature: float = 1.0
    starts: np.ndarray | None = None
    members: list[MDNRNN] = field(default_factory=list)
    disagreement: float = 0.0
    dream_dropout: bool = False
    fast_acting: bool = False
    start_states: list[tuple[np.ndarray, np.ndarray]] | None = None
    dream_steps: int = 0
    z_charge: ZCharge | None = None
    device: str = "cpu"
    models: Shared = field(init=False)
    _dream_models: list[MDNRNN] | None = field(init=False, default=None)
    bfloat16: bool = field(init=False)

    def __post_init__(self) -> None:
        self.models = share_agent_models(self.pool, self.vae, self.mdrnn)  # once: every real episode reads these
        self.bfloat16 = self.fast_acting and acting_in_bfloat16(self.vae)

    def real(self, params: np.ndarray, seeds: list[int], training: TrainingEpisodes = PLAIN_EPISODES, desc: str | None = None,
             record_actions: bool = False) -> EpisodeResults:
        """Controller ``params[i]`` [P] on track ``seeds[i]``, plain episodes unless ``training``
        says otherwise (record_actions: with each episode's actions)."""
        return run_agent_parallel(self.pool, self.models, params, seeds, self.max_steps, training, self.inputs,
                                  self.fast_render, desc=desc, fast_acting=self.fast_acting, record_actions=record_actions,
                                  bfloat16=self.bfloat16)

    def dream(self, params: np.ndarray, seeds: list[int]) -> EpisodeResults:
        """Controller ``params[i]`` [P] in dream ``seeds[i]``: the seed picks its start among
        ``starts`` and its random stream, at the temperature, in M and its members."""
        mdrnn, members, z0, states = self._dream_setup(seeds)
        return run_dream_episodes(mdrnn, params, z0, seeds, self.temperature, self.dream_steps or self.max_steps,
                                  self.inputs, members, self.disagreement, self.dream_dropout, states, self.z_charge)

    def dream_ascent(self, state: GradientState, seeds: list[int], truncation: int) -> EpisodeResults:
        """The controller of ``state`` in dreams ``seeds`` (as ``dream`` sets them up), learning
        by gradient as it drives (dream_gradient.ascend_in_dreams)."""
        mdrnn, members, z0, states = self._dream_setup(seeds)
        dreams = DreamBatch(mdrnn, z0, seeds, self.temperature, members, self.disagreement, self.dream_dropout,
                            states, self.z_charge)
        return ascend_in_dreams(dreams, state, self.inputs, self.dream_steps or self.max_steps, truncation)

    def _dream_setup(self, seeds: list[int]) -> tuple[MDNRNN, list[MDNRNN], np.ndarray, list | None]:
        """M and its members on the dreams' device, and each dream's start: its first latent
        [B, Z] and each model's (h, c) [B, H] there (None: the zero state)."""
        if self.starts is None:
            raise ValueError("these worlds have no first latents to dream from")
        index = start_indices(len(self.starts), seeds)
        states = None if self.start_states is None else [(h[index], c[index]) for h, c in self.start_states]
        if self._dream_models is None:  # copies on the device, made once (V and M stay on the CPU for the real tracks)
            on_cpu = [self.mdrnn, *self.members]
            self._dream_models = on_cpu if self.device == "cpu" else [copy.deepcopy(m).to(self.device) for m in on_cpu]
        mdrnn, *members = self._dream_models
        return mdrnn, members, self.starts[index], states

    def describe_renderer(self) -> str:
        if not self.fast_render:
            return "stock renderer"
        if not self.fast_acting:
            return "fast renderer"
        return f"fast renderer, fast acting in {'bfloat16' if self.bfloat16 else 'float32'}"

    def describe(self) -> str:
        if self.starts is None:
            return "the real env"
        world = f"dreams at temperature {self.temperature}" + (f" on {self.device}" if self.device != "cpu" else "")
        if self.start_states is not None:
            world += f", {self.dream_steps or self.max_steps} steps each from {len(self.starts)} real mid-episode states"
        if self.members:
            world += f" of M and {len(self.members)} members (reward: mean - {self.disagreement} x std"
            if self.z_charge is not None:
                world += (f" - {self.z_charge.weight:g} x max(0, their z disagreement - {self.z_charge.threshold:.4f}), "
                          "the threshold set by the recorded episodes")
            world += ")"
        if self.dream_dropout:
            rates = ", ".join(f"{model.dropout}" for model in (self.mdrnn, *self.members) if model.dropout)
            world += f", with a new dropout mask of h every step (dropout {rates})"
        return world
