"""Dreams: episodes that happen inside M instead of CarRacing.

A dream starts from a real first latent (V's mu of an episode's first frame, from
data/series/initial_latents.npz), or branches off a recorded episode at a real state in
its middle (``branch_starts``: V's mu there and M's h after the steps before it). Each
step, C acts on [z_t, h_t]; M consumes (z_t, a_t) through the same ``MDNRNN.step`` as
everywhere else; z_{t+1} is sampled from M's mixture at temperature tau; the reward comes from M's reward head and the episode's end is drawn
from its done head.

``DreamBatch`` steps B dreams at once in torch (a CMA population times its episodes).
Every dream draws its random numbers from its own generator, seeded by the dream's seed,
so a dream unfolds the same alone or in a batch of any size. ``DreamEnv``
(worldmodels/envs/dream_env.py) is the same engine behind the ``gymnasium.Env`` interface,
for any gymnasium agent.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from worldmodels.controller import LinearControllers, controller_features, controller_input_size
from worldmodels.mdrnn import MDNRNN, LSTMState, done_probability, sample_mixture
from worldmodels.results import EpisodeResults

NOISE_CHUNK = 64  # steps of random draws made at a time per dream (fewer small generator calls)
Z_THRESHOLD_EPISODES = 100  # recorded episodes (evenly spread) that set the z charge's threshold


@dataclass(frozen=True)
class ZCharge:
    """What an ensemble dream charges each step for the Ms' disagreement about z_{t+1}:
    ``weight`` x max(0, d - ``threshold``), where d is ``z_disagreement`` (as MOReL and MOPO
    charge a learned model's uncertainty: where the Ms part ways, a dream is M's guess)."""
    weight: float
    threshold: float


def mixture_mean(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """M's head outputs (log_pi, mu [..., Z, K]) -> the mean of its mixture for each z dimension [..., Z]."""
    return (out["log_pi"].exp() * out["mu"]).sum(-1)


def z_disagreement(outs: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Several Ms' head outputs for the same steps -> their disagreement about z_{t+1} [...]: the
    std across the Ms of their mixtures' means, averaged over z's dimensions."""
    return torch.stack([mixture_mean(out) for out in outs]).std(0, correction=0).mean(-1)


class DreamBatch:
    """B dreams in M, stepped together.

    z0: [B, Z] first latents; seeds: B ints, one random stream per dream.

    members: more Ms trained beside M on the same latents (04_train_rnn.py --member), for a
    dream that charges for M's guesses. Each member follows the dream with its own hidden
    state; each step, z_{t+1} is sampled from one model (M or a member) drawn at random per
    dream, the end from their mean done probability, and the reward is their mean reward
    minus ``disagreement`` x its std across the models, and with ``z_charge`` minus its charge
    for their disagreement about z_{t+1} (``ZCharge``). Both charges compare what the models
    predict from their whole h, as the z charge's threshold does: with dropout, each model's
    own mask would make even identical models disagree. C still sees M's h, as in the real env.

    dropout: every model trained with dropout (MDNRNN.dropout > 0) predicts each step from a
    new dropout mask of h, drawn from the dream's own stream, so every dream runs in a
    slightly different M, as in training ("Dropout's Dream Land"); False: the whole h.

    states: each model's (h, c), each [B, H], where the dreams start (``branch_starts``);
    None: M's zero state, as at an episode's first frame.

    The dreams run on the device of M's weights (every model must be there). The random draws
    are made on the CPU, from the dreams' own generators, and moved there: a dream draws the
    same numbers on any device.
    """

    def __init__(self, mdrnn: MDNRNN, z0: torch.Tensor | np.ndarray, seeds: list[int], temperature: float,
                 members: Sequence[MDNRNN] = (), disagreement: float = 0.0, dropout: bool = False,
                 states: Sequence[tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]] | None = None,
                 z_charge: ZCharge | None = None):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if (disagreement or z_charge) and not members:
            raise ValueError("a disagreement penalty needs ensemble members beside M")
        self.mdrnn, self.temperature, self.disagreement, self.z_charge = mdrnn, temperature, disagreement, z_charge
        self.models = [mdrnn, *members]
        weight = next(mdrnn.parameters())
        self.device, self.dtype = weight.device, weight.dtype  # float32, unless M was made otherwise (a float64 M checks gradients)
        self.z = torch.as_tensor(z0).to(self.device, self.dtype).clone()
        if states is None:
            self.states = [model.initial_state(len(seeds), self.device) for model in self.models]
        else:
            if len(states) != len(self.models):
                raise ValueError(f"start states for {len(states)} models, but the dream runs {len(self.models)}")
            self.states = [(torch.as_tensor(h).to(self.device, self.dtype)[None].clone(),
                            torch.as_tensor(c).to(self.device, self.dtype)[None].clone())
                           for h, c in states]
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        offset = base = 2 * mdrnn.z_size + 1 + (len(self.models) > 1)  # draws before the masks' (see _draws)
        self.mask_draws = {}  # model index -> where its mask's uniforms are among a step's draws
        for i, model in enumerate(self.models):
            if dropout and model.dropout > 0:
                self.mask_draws[i] = slice(offset, offset + model.hidden_size)
                offset += model.hidden_size
        self._mask_draw_count = offset - base
        self.noise = torch.zeros(len(seeds), 0, offset)
        self.t = 0

    @property
    def state(self) -> LSTMState:
        """M's (h, c), each [1, B, H]."""
        return self.states[0]

    @property
    def features(self) -> torch.Tensor:
        """[z_t, h_t]: [B, Z + H], what the paper's C sees (and DreamEnv's observation)."""
        return self.controller_input("zh")

    def controller_input(self, inputs: str) -> torch.Tensor:
        """What a C that reads ``inputs`` (controller.CONTROLLER_INPUTS) sees: [B, I]."""
        return controller_features(inputs, self.z, self.state[0][0], self.state[1][0])

    def _draws(self) -> torch.Tensor:
        """This step's random numbers of every dream: [B, draws], in this order: uniforms and
        normals for z, the end, (with members) which model's z is taken, (with dropout) the
        uniforms of each dropout model's mask."""
        index = self.t % NOISE_CHUNK
        if index == 0:
            z, ensemble = self.mdrnn.z_size, len(self.models) > 1
            masks = self._mask_draw_count
            self.noise = torch.stack([
                torch.cat([torch.rand(NOISE_CHUNK, z, generator=g), torch.randn(NOISE_CHUNK, z, generator=g),
                           torch.rand(NOISE_CHUNK, 1, generator=g)]  # M alone draws these, so an ensemble shares them
                          + [torch.rand(NOISE_CHUNK, 1, generator=g)] * ensemble
                          + [torch.rand(NOISE_CHUNK, masks, generator=g)] * (masks > 0), dim=1)
                for g in self.generators
            ]).to(self.device, self.dtype)
        return self.noise[:, index]

    @torch.no_grad()
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """actions [B, 3] -> (reward [B], done bool [B]); advances z and every model's state."""
        reward, p_done, end_draw = self._advance(actions, straight_through=False)
        return reward, end_draw < p_done

    def expected_step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same step with gradients: actions [B, 3] -> (reward [B], P(the dream ends here) [B]),
        differentiable with respect to the actions, z and the states, through M; the next z is
        sampled with ``sample_mixture``'s straight-through estimate. The dream goes on whatever
        its end draw says (weight each step's reward by the probability of getting there);
        it draws the same random numbers as ``step``, so it follows the same dream."""
        reward, p_done, _ = self._advance(actions, straight_through=True)
        return reward, p_done

    def detach(self) -> None:
        """Cut the gradient's path here (truncated backpropagation): z and every model's state
        keep their values and forget how they were made."""
        self.z = self.z.detach()
        self.states = [(h.detach(), c.detach()) for h, c in self.states]

    def _advance(self, actions: torch.Tensor, straight_through: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of every dream: (reward [B], P(end) [B], the end's uniform draw [B])."""
        draws = self._draws()
        z_size, actions = self.mdrnn.z_size, actions.to(self.device, self.dtype)
        outs, whole = [], []  # each model's outputs as the dream draws them, and with the whole h (what the charges compare)
        charged = bool(self.disagreement) or self.z_charge is not None
        for i, model in enumerate(self.models):
            mask = model.dropout_mask(draws[:, self.mask_draws[i]]) if i in self.mask_draws else None
            out, self.states[i] = model.step(self.z, actions, self.states[i], mask)
            outs.append(out)
            # the masks differ between members: compared through them, identical Ms would disagree by the masks alone
            whole.append(model.head(self.states[i][0][0]) if mask is not None and charged else out)
        if len(outs) == 1:
            mixture, reward, p_done = outs[0], outs[0]["reward"], done_probability(outs[0]["done_logit"])
        else:
            chosen = (draws[:, 2 * z_size + 1] * len(outs)).long().clamp(max=len(outs) - 1)  # [B]: whose z
            rows = torch.arange(len(chosen))
            mixture = {k: torch.stack([out[k] for out in outs])[chosen, rows] for k in ("log_pi", "mu", "log_sigma")}
            reward = torch.stack([out["reward"] for out in outs]).mean(0)
            if self.disagreement:
                reward = reward - self.disagreement * torch.stack([out["reward"] for out in whole]).std(0, correction=0)
            if self.z_charge is not None:
                reward = reward - self.z_charge.weight * (z_disagreement(whole) - self.z_charge.threshold).clamp(min=0)
            p_done = torch.stack([done_probability(out["done_logit"]) for out in outs]).mean(0)
        self.z = sample_mixture(mixture["log_pi"], mixture["mu"], mixture["log_sigma"], self.temperature,
                                noise=(draws[:, :z_size], draws[:, z_size : 2 * z_size]), straight_through=straight_through)
        self.t += 1
        return reward, p_done, draws[:, 2 * z_size]


def start_indices(count: int, seeds: list[int]) -> np.ndarray:
    """Which of ``count`` starts each dream starts from [len(seeds)], picked by its seed."""
    return np.array([np.random.default_rng(seed).integers(count) for seed in seeds], dtype=np.int64)


def first_latents(starts: np.ndarray, seeds: list[int]) -> np.ndarray:
    """The first latent [len(seeds), Z] of each dream: one of ``starts`` [N, Z] (real first
    frames), picked by the dream's seed."""
    return starts[start_indices(len(starts), seeds)].astype(np.float32)


@torch.no_grad()
def branch_starts(models: Sequence[MDNRNN], episodes: Sequence[dict[str, np.ndarray]], count: int,
                  seed: int) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """``count`` real states to branch dreams from, drawn uniformly over every step of the
    recorded ``episodes`` (series: "mu" [T, Z], "action" [T, 3]) with ``seed``: V's mu at
    step t [count, Z] and, for each model, its (h, c) [count, H] after consuming steps 0..t-1
    (zero at t = 0). A dream from there sees the real road ahead (the bend in view is the
    recorded track's, not one M imagined) and how the car got there."""
    lengths = np.array([len(e["action"]) for e in episodes])
    flat = np.sort(np.random.default_rng(seed).choice(int(lengths.sum()), size=count, replace=True))
    ends = np.cumsum(lengths)  # where each episode's steps end in the flat count
    episode = np.searchsorted(ends, flat, side="right")
    t = flat - (ends - lengths)[episode]
    z = np.stack([episodes[e]["mu"][s] for e, s in zip(episode, t)]).astype(np.float32)
    steps, used = int(t.max()), np.unique(episode)  # M runs the episodes that hold a start, up to the latest start
    zs = torch.zeros(len(used), steps, z.shape[1])
    actions = torch.zeros(len(used), steps, episodes[0]["action"].shape[1])
    for row, e in enumerate(used):
        n = min(steps, lengths[e])
        zs[row, :n] = torch.as_tensor(episodes[e]["mu"][:n], dtype=torch.float32)
        actions[row, :n] = torch.as_tensor(episodes[e]["action"][:n], dtype=torch.float32)
    rows, states = np.searchsorted(used, episode), []
    for model in models:
        h, c = np.zeros((count, model.hidden_size), np.float32), np.zeros((count, model.hidden_size), np.float32)
        state = model.initial_state(len(used))
        for step in range(steps):  # the state at step + 1, after consuming step
            _, state = model.step(zs[:, step], actions[:, step], state)  # (the heads' dropout does not touch h)
            here = t == step + 1
            h[here], c[here] = state[0][0, rows[here]].numpy(), state[1][0, rows[here]].numpy()
        states.append((h, c))
    return z, states


@torch.no_grad()
def run_dream_episodes(
    mdrnn: MDNRNN, params: np.ndarray, z0: np.ndarray, seeds: list[int], temperature: float, max_steps: int,
    inputs: str = "zh", members: Sequence[MDNRNN] = (), disagreement: float = 0.0, dropout: bool = False,
    states: Sequence[tuple[np.ndarray, np.ndarray]] | None = None, z_charge: ZCharge | None = None,
) -> EpisodeResults:
    """Dream i runs controller params[i] from first latent z0[i] with seed seeds[i], all in one
    batch, until its drawn end or ``max_steps``. inputs: what C reads (controller.CONTROLLER_INPUTS);
    members, disagreement, z_charge: an ensemble dream; dropout: dropout masks in the dream;
    states: each model's (h, c) [B, H] at the start (DreamBatch). The dreams run on M's device."""
    dreams = DreamBatch(mdrnn, z0, seeds, temperature, members, disagreement, dropout, states, z_charge)
    input_size = controller_input_size(inputs, mdrnn.z_size, mdrnn.hidden_size)
    controllers = LinearControllers(torch.as_tensor(params, dtype=torch.float32, device=dreams.device), input_size)
    returns = torch.zeros(len(seeds), dtype=torch.float64, device=dreams.device)
    steps = torch.zeros(len(seeds), dtype=torch.int64, device=dreams.device)
    active = torch.ones(len(seeds), dtype=torch.bool, device=dreams.device)
    for _ in range(max_steps):
        reward, done = dreams.step(controllers(dreams.controller_input(inputs)))
        returns += torch.where(active, reward.double(), 0.0)
        steps += active
        active &= ~done
        if not active.any():
            break
    return EpisodeResults(returns.cpu().numpy(), steps.cpu().numpy())


@torch.no_grad()
def z_disagreement_threshold(models: Sequence[MDNRNN], episodes: Sequence[dict[str, np.ndarray]], quantile: float) -> float:
    """The ``quantile`` of the Ms' disagreement about z_{t+1} (``z_disagreement``) over every step
    of up to Z_THRESHOLD_EPISODES recorded ``episodes`` (series: "mu" [T, Z], "action" [T, 3]),
    evenly spread, each M fed the real latents with its whole h: how much the Ms part ways
    where the data is. ``ZCharge`` charges a dream only for disagreement above it."""
    picked = np.unique(np.linspace(0, len(episodes) - 1, min(len(episodes), Z_THRESHOLD_EPISODES)).round().astype(int))
    values = []
    for e in picked:
        z = torch.as_tensor(episodes[e]["mu"], dtype=torch.float32)[None]
        action = torch.as_tensor(episodes[e]["action"], dtype=torch.float32)[None]
        whole_h = [torch.ones(1, z.shape[1], model.hidden_size) for model in models]  # no dropout, in any mode
        values.append(z_disagreement([model(z, action, mask=mask)[0] for model, mask in zip(models, whole_h)])[0])
    return float(torch.quantile(torch.cat(values), quantile))
