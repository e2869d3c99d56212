"""C: the linear controller a_t = W_c [z_t h_t] + b_c, what it reads, and the action squashing.

With Z = 32 and H = 256, W_c is [3, 288] and b_c [3]: 867 parameters, searched by CMA-ES
as one flat vector laid out as W_c row-major, then b_c. C reads one of CONTROLLER_INPUTS:
z alone (the paper's "z only" agent, 99 parameters), [z, h] (its full agent) or [z, h, c],
with the LSTM's cell state too (1,635 parameters).
"""

import numpy as np
import torch

from worldmodels.constants import ACTION_SIZE

CONTROLLER_INPUTS = ("z", "zh", "zhc")  # what C reads: z; [z, h]; [z, h, c]
# The search's step on a weight that reads c, as a share of its step on the others. h = o * tanh(c)
# lies in [-1, 1], c does not: on the large profile's M, c's RMS is 4-6 against h's 0.22-0.24 and
# z's 0.54 (2026-12-07), so a step of sigma0 on c's 256 weights moves the action ~20 times more
# than the same step on h's, and a search at sigma0 0.05 drives at random from its first generation.
CELL_STEP = 0.05


def controller_input_size(inputs: str, z_size: int, hidden_size: int) -> int:
    """The length of C's input vector for ``inputs`` (one of CONTROLLER_INPUTS)."""
    if inputs not in CONTROLLER_INPUTS:
        raise ValueError(f"C reads one of {CONTROLLER_INPUTS}, not {inputs!r}")
    return z_size + hidden_size * (len(inputs) - 1)


def controller_features(inputs: str, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """What C reads: z [B, Z], M's h and c [B, H] -> [B, I], the parts ``inputs`` names, in order."""
    return torch.cat([{"z": z, "h": h, "c": c}[part] for part in inputs], dim=1)


def search_step_scales(inputs: str, z_size: int, hidden_size: int) -> np.ndarray | None:
    """Each parameter's share of the search's step size [P]: CELL_STEP on the weights that
    read c, 1 elsewhere; None (all 1) for controllers that do not read c."""
    if "c" not in inputs:
        return None
    input_size = controller_input_size(inputs, z_size, hidden_size)
    scales = np.ones((ACTION_SIZE, input_size))
    scales[:, input_size - hidden_size:] = CELL_STEP  # c comes last in controller_features
    return np.concatenate([scales.reshape(-1), np.ones(ACTION_SIZE)])


def parameter_count(input_size: int, action_size: int = ACTION_SIZE) -> int:
    return action_size * input_size + action_size


def widen_controller(params: torch.Tensor, reads: str, inputs: str, z_size: int, hidden_size: int) -> torch.Tensor:
    """A controller that reads ``reads`` as one that reads ``inputs``, which begin with them
    (z in [z, h]; z or [z, h] in [z, h, c]): the same weights and biases, zero weight on what
    it did not read, so it acts exactly as before. params [P] -> [P']."""
    if not inputs.startswith(reads):
        raise ValueError(f"a controller reading {reads!r} cannot be widened to read {inputs!r}")
    narrow = controller_input_size(reads, z_size, hidden_size)
    weight = params[:ACTION_SIZE * narrow].reshape(ACTION_SIZE, narrow)
    added = torch.zeros(ACTION_SIZE, controller_input_size(inputs, z_size, hidden_size) - narrow, dtype=params.dtype)
    return torch.cat([torch.cat([weight, added], dim=1).reshape(-1), params[ACTION_SIZE * narrow:]])


def squash_action(raw: torch.Tensor) -> torch.Tensor:
    """raw [..., 3] -> (steering tanh in [-1, 1], gas (tanh + 1) / 2 in [0, 1],
    brake clip(tanh, 0, 1)): a zero controller steers straight, half gas, no brake."""
    t = torch.tanh(raw)
    return torch.stack([t[..., 0], (t[..., 1] + 1) / 2, t[..., 2].clamp(min=0.0)], dim=-1)


class LinearControllers:
    """A batch of B controllers, one per environment, applied in one batched matmul.

    params: [B, P] flat parameter vectors (P = parameter_count(input_size)).
    """

    def __init__(self, params: torch.Tensor, input_size: int, action_size: int = ACTION_SIZE):
        expected = parameter_count(input_size, action_size)
        if params.ndim != 2 or params.shape[1] != expected:
            raise ValueError(f"controller parameters must be [B, {expected}], got {list(params.shape)}")
        split = action_size * input_size
        self.weight = params[:, :split].reshape(-1, action_size, input_size)  # [B, A, I]
        self.bias = params[:, split:]  # [B, A]

    def __call__(self, features: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """features: [N, I] (controller_features) -> actions [N, A] within CarRacing's bounds.

        rows: [N] indices of the controllers to apply (all B when None)."""
        weight, bias = (self.weight, self.bias) if rows is None else (self.weight[rows], self.bias[rows])
        raw = torch.bmm(weight, features.unsqueeze(-1)).squeeze(-1) + bias
        return squash_action(raw)
