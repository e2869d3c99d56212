"""M: the MDN-RNN, an LSTM whose head is a mixture of Gaussians for z_{t+1}.

Timing, the same in training, real rollouts and dreams:
    h_t summarises (z, a) before t; C acts on [z_t, h_t]; then M consumes (z_t, a_t) to
    produce h_{t+1}, and from h_{t+1} predicts z_{t+1}, the reward r_t of action a_t and
    whether the episode ended after it. ``MDNRNN.forward`` does this for a whole sequence
    and ``MDNRNN.step`` for one step, both through the same LSTM and head.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.controller import squash_action

HIDDEN_SIZE = 256
GAUSSIANS = 5
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -7.0, 2.0  # keeps the density finite and the sampler sane

LSTMState = tuple[torch.Tensor, torch.Tensor]


class MDNRNN(nn.Module):
    """Input [z_t, a_t] (Z + A) -> LSTM(HIDDEN) -> per latent dimension a mixture of K Gaussians,
    plus a reward head and a done head.

    dropout: the share of h's units the heads do not see, drawn anew each step in training
    (and, with masks from ``dropout_mask``, in a dream: every mask a slightly different M, after
    Wellmer & Kwok 2021, "Dropout's Dream Land"). C always sees the whole h.

    action_head: M also predicts the action a driver takes at each step from what C sees then,
    [z_t, h_t] (h_t before the step), through a linear layer and C's squashing: a controller's
    very form, so the head is a controller that imitates the driver (``action_head_params``).
    """

    def __init__(self, z_size: int = 32, action_size: int = 3, hidden_size: int = HIDDEN_SIZE, gaussians: int = GAUSSIANS,
                 dropout: float = 0.0, action_head: bool = False):
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.z_size, self.action_size = z_size, action_size
        self.hidden_size, self.gaussians, self.dropout = hidden_size, gaussians, dropout
        self.lstm = nn.LSTM(z_size + action_size, hidden_size, batch_first=True)
        self.head_dropout = nn.Dropout(dropout)
        self.mdn = nn.Linear(hidden_size, 3 * z_size * gaussians)  # logit pi, mu, log sigma
        self.reward = nn.Linear(hidden_size, 1)
        self.done = nn.Linear(hidden_size, 1)
        self.action_head = nn.Linear(z_size + hidden_size, action_size) if action_head else None

    def config(self) -> dict:
        config = {"z_size": self.z_size, "action_size": self.action_size, "hidden_size": self.hidden_size, "gaussians": self.gaussians}
        if self.dropout:  # only when set, so that checkpoints of Ms without dropout keep their config
            config["dropout"] = self.dropout
        if self.action_head is not None:  # the same
            config["action_head"] = True
        return config

    def action_head_params(self) -> torch.Tensor:
        """The action head as a controller's flat parameters [A * (Z + H) + A] (controller.py's
        layout: W row-major, then b), for a controller that reads [z, h] of this M."""
        return torch.cat([self.action_head.weight.detach().flatten(), self.action_head.bias.detach()])

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> LSTMState:
        """Zero (h, c), each [1, B, H] as nn.LSTM takes them."""
        zeros = torch.zeros(1, batch, self.hidden_size, device=device)
        return zeros, zeros.clone()

    def head(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """h: [..., H] -> log_pi, mu, log_sigma [..., Z, K]; reward, done_logit [...]."""
        params = self.mdn(h).unflatten(-1, (3, self.z_size, self.gaussians))
        logit_pi, mu, log_sigma = params.unbind(dim=-3)
        return {
            "log_pi": F.log_softmax(logit_pi, dim=-1),
            "mu": mu,
            "log_sigma": log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX),
            "reward": self.reward(h).squeeze(-1),
            "done_logit": self.done(h).squeeze(-1),
        }

    def dropout_mask(self, uniform: torch.Tensor) -> torch.Tensor:
        """uniform [..., H] in [0, 1) -> a dropout mask [..., H] for the heads' input: 0 for a
        dropped unit, 1 / (1 - dropout) for a kept one (as nn.Dropout scales in training)."""
        return (uniform >= self.dropout).to(uniform.dtype) / (1 - self.dropout)

    def forward(self, z: torch.Tensor, action: torch.Tensor, state: LSTMState | None = None,
                mask: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], LSTMState]:
        """z: [B, T, Z], action: [B, T, A] -> (head outputs [B, T, ...] for step t+1, final state).
        mask [B, T, H]: multiplies h before the heads (``dropout_mask``); without one, the
        heads see h through nn.Dropout (which drops only in training mode). With the action
        head, "action" [B, T, A]: the action predicted at step t itself, from z_t and the h
        before it (the whole h, as C sees it)."""
        h, new_state = self.lstm(torch.cat([z, action], dim=-1), state)
        out = self.head(self.head_dropout(h) if mask is None else h * mask)
        if self.action_head is not None:
            first = torch.zeros_like(h[:, :1]) if state is None else state[0][0][:, None]
            before = torch.cat([first, h[:, :-1]], dim=1)
            out["action"] = squash_action(self.action_head(torch.cat([z, before], dim=-1)))
        return out, new_state

    def step(self, z: torch.Tensor, action: torch.Tensor, state: LSTMState,
             mask: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], LSTMState]:
        """One step for a batch: z [B, Z], action [B, A], state, mask [B, H] or None ->
        (head outputs [B, ...], new state). The new hidden vector h_{t+1} is ``state[0][0]`` [B, H]."""
        out, state = self.forward(z[:, None], action[:, None], state, None if mask is None else mask[:, None])
        return {k: v[:, 0] for k, v in out.items()}, state


@torch.no_grad()
def states_before_actions(mdrnn: MDNRNN, z: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z [T, Z], action [T, A] of one episode -> h, c [T, H]: M's LSTM state before action t
    (what an agent acting on these latents has then), from the zero state.

    h comes from one pass of the LSTM; c from its gates (torch's order: input, forget, cell,
    output) run forward, and h = o * tanh(c) checks the two against each other."""
    x, lstm, zeros = torch.cat([z, action], dim=-1), mdrnn.lstm, torch.zeros(1, mdrnn.hidden_size)
    h_after = lstm(x[None])[0][0]
    h_before = torch.cat([zeros, h_after[:-1]])
    gates = (x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h_before @ lstm.weight_hh_l0.T + lstm.bias_hh_l0).chunk(4, dim=-1)
    i, f, o, g = gates[0].sigmoid(), gates[1].sigmoid(), gates[3].sigmoid(), gates[2].tanh()
    c_after, c = torch.empty_like(h_before), zeros[0]
    for t in range(len(x)):
        c = f[t] * c + i[t] * g[t]
        c_after[t] = c
    if not torch.allclose(o * c_after.tanh(), h_after, atol=1e-4):
        raise RuntimeError("the LSTM's cell state does not give its h: has torch's LSTM changed its gate layout?")
    return h_before, torch.cat([zeros, c_after[:-1]])


def mixture_nll(log_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log p(target) under per-dimension mixtures.

    log_pi, mu, log_sigma: [..., Z, K]; target: [..., Z] -> NLL per dimension [..., Z].
    """
    x = target.unsqueeze(-1)
    log_normal = -0.5 * ((x - mu) / log_sigma.exp()).pow(2) - log_sigma - 0.5 * math.log(2 * math.pi)
    return -torch.logsumexp(log_pi + log_normal, dim=-1)


def sample_mixture(
    log_pi: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, temperature: float = 1.0,
    generator: torch.Generator | None = None, noise: tuple[torch.Tensor, torch.Tensor] | None = None,
    straight_through: bool = False,
) -> torch.Tensor:
    """Sample z [..., Z] from per-dimension mixtures [..., Z, K] at temperature tau:
    component logits are divided by tau and sigmas multiplied by sqrt(tau).

    noise: the random draws (uniform [..., Z] picking each component by inverse CDF, standard
    normal [..., Z]); drawn from ``generator`` when not given.

    Gradients: z = mu_k + sigma_k * eps reaches the chosen component's mu and sigma exactly
    (reparameterised). The choice of k has none; ``straight_through`` gives it the
    straight-through estimate: the sample is unchanged, and its gradient with respect to the
    mixture weights is that of sum_j pi_j (mu_j + sigma_j * eps), as if the one-hot choice were
    the weights themselves. (A Gumbel-softmax relaxation would change the sample itself, and
    so the dream: a dream trained by gradient would not be the dream CMA-ES is scored in.)"""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if noise is None:
        uniform = torch.rand(mu.shape[:-1], generator=generator, device=mu.device, dtype=mu.dtype)
        normal = torch.randn(mu.shape[:-1], generator=generator, device=mu.device, dtype=mu.dtype)
    else:
        uniform, normal = noise
    cumulative = F.softmax(log_pi / temperature, dim=-1).cumsum(-1)
    k = (cumulative < uniform.unsqueeze(-1)).sum(-1, keepdim=True).clamp(max=mu.shape[-1] - 1)
    chosen_mu = mu.gather(-1, k).squeeze(-1)
    chosen_sigma = log_sigma.gather(-1, k).squeeze(-1).exp() * math.sqrt(temperature)
    z = chosen_mu + chosen_sigma * normal
    if straight_through:  # adds zero to the sample, and the weights' gradient to it
        weights = F.softmax(log_pi / temperature, dim=-1)
        every_component = mu + log_sigma.exp() * math.sqrt(temperature) * normal.unsqueeze(-1)
        z = z + ((weights - weights.detach()) * every_component).sum(-1)
    return z


def most_likely_z(log_pi: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """z [..., Z]: in each dimension the mean of the most probable component [..., Z, K]
    (what sample_mixture tends to as the temperature goes to 0)."""
    return mu.gather(-1, log_pi.argmax(-1, keepdim=True)).squeeze(-1)


DONE_POS_WEIGHT = 10.0  # episode ends are rare; the original weighted them x10 for its dreams


def mdrnn_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], done_pos_weight: float = DONE_POS_WEIGHT) -> dict[str, torch.Tensor]:
    """Losses of M on a batch of episodes or time chunks of them (worldmodels.data.SeriesEpisodes), each a scalar:
    'nll' (mixture NLL of z_{t+1} per latent dimension), 'reward' (MSE), 'done' (weighted BCE),
    with the action head 'action' (squared error of the action, summed over its 3 parts, on the
    steps of agent-driven episodes, batch["driven"]), and their sum 'loss'."""
    next_mask, step_mask = batch["next_mask"], batch["step_mask"]
    nll = mixture_nll(out["log_pi"], out["mu"], out["log_sigma"], batch["next_z"]).mean(-1)
    nll = (nll * next_mask).sum() / next_mask.sum().clamp(min=1)
    reward = ((out["reward"] - batch["reward"]).pow(2) * step_mask).sum() / step_mask.sum().clamp(min=1)
    done = F.binary_cross_entropy_with_logits(
        out["done_logit"], batch["terminated"], reduction="none", pos_weight=torch.tensor(done_pos_weight)
    )
    done = (done * step_mask).sum() / step_mask.sum().clamp(min=1)
    losses = {"loss": nll + reward + done, "nll": nll, "reward": reward, "done": done}
    if "action" in out:
        driven = batch["driven"]
        action = ((out["action"] - batch["action"]).pow(2).sum(-1) * driven).sum() / driven.sum().clamp(min=1)
        losses |= {"loss": losses["loss"] + action, "action": action}
    return losses


def done_probability(done_logit: torch.Tensor, pos_weight: float = DONE_POS_WEIGHT) -> torch.Tensor:
    """P(the episode ends) from the done head. Ends were weighted ``pos_weight`` times in
    training, which multiplies the head's odds by that much; they are divided back here."""
    return torch.sigmoid(done_logit - math.log(pos_weight))


TILE_REWARD = 1.0  # CarRacing pays about 1000/N_tiles - 0.1 (3 to 4) for a new tile, -0.1 otherwise


def head_scores(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """How well the reward and done heads would drive a dream, over the steps of ``batch``:
    reward MSE; tile accuracy (reward above TILE_REWARD or not, predicted vs real), the share
    of new-tile steps, and the tile AUC (how often a new-tile step gets a higher predicted
    reward than an ordinary step, off-playfield steps left out); and the
    ends (terminated) predicted with P > 0.5: true and false positives, real ends."""
    mask = batch["step_mask"].bool()
    predicted, real = out["reward"][mask], batch["reward"][mask]
    ends, called = batch["terminated"][mask].bool(), done_probability(out["done_logit"][mask]) > 0.5
    return {
        "reward_mse": (predicted - real).pow(2).mean().item(),
        "tile_accuracy": ((predicted > TILE_REWARD) == (real > TILE_REWARD)).float().mean().item(),
        "tile_steps": (real > TILE_REWARD).float().mean().item(),  # the share of new-tile steps: a baseline
        "tile_auc": _ranking_auc(predicted[real > TILE_REWARD], predicted[(real <= TILE_REWARD) & (real > -50)]),
        "ends": int(ends.sum()), "ends_found": int((called & ends).sum()), "false_ends": int((called & ~ends).sum()),
    }


def _ranking_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(a random positive scores above a random negative), ties counting half; NaN without both."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    # Mann-Whitney U from mean ranks, in O(n log n): a held-out set can hold 100k steps.
    values, inverse, counts = torch.cat([positive, negative]).unique(return_inverse=True, return_counts=True)
    below = counts.cumsum(0) - counts  # scores smaller than each distinct value
    ranks = (below + (counts + 1) / 2).double()[inverse]  # ties share their mean rank
    return ((ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative))).item()
