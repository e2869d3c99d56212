"""C learned by gradient in the dream (05 --dream --gradient): ascent on the dream's expected
return, back through M, as the paper suggests for a fully differentiable world model.

A generation runs a batch of dreams (``DreamBatch``: the dreams CMA-ES is scored in, with the
same starts, random draws, temperature, dropout masks and ensemble charges) with the one
controller the search stands at, and Adam updates that controller after every ``truncation``
steps: truncated backpropagation through time, z, h and c carrying their values across each
cut but not their gradients. What it ascends is each dream's expected return

    sum_t P(going on at t) r_t,    P(going on at t) = prod_{s<t} (1 - p_end_s),

with r_t and p_end_s from M's reward and done heads: the end is a probability of going on
rather than a coin flip, so the gradient reaches the done head too (a controller learns to
keep the dream from ending, or to end a losing one). The next z is sampled with the
straight-through estimate for the mixture's component (mdrnn.sample_mixture says why).

The state (gradient_state.npz) is plain data: the controller, Adam's moments and step count,
and the search record every search keeps (worldmodels/search_record.py). A resumed search
continues exactly: every generation's dreams are set by its number.
"""

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worldmodels.atomic import save_npz
from worldmodels.controller import LinearControllers, controller_input_size
from worldmodels.dream import DreamBatch
from worldmodels.errors import DataError
from worldmodels.results import EpisodeResults
from worldmodels.search_record import SearchRecord, read_record, record_arrays

GRADIENT_STATE_FILE = "gradient_state.npz"
GRADIENT_CLIP = 1.0  # the update's gradient norm at most (one dream that blows up through M's LSTM cannot throw C far)
STILL_GOING = 1e-4  # a batch stops when no dream is this likely to be still going (the rest adds nothing)
_FIX = "delete it or pass --restart"


@dataclass(kw_only=True)
class GradientState(SearchRecord):
    """A gradient search: the controller (a leaf tensor) and its Adam optimiser."""
    params: torch.Tensor  # float32 [P]
    optimizer: torch.optim.Adam
    generations_done: int = 0

    @property
    def generation(self) -> int:
        return self.generations_done

    @property
    def mean(self) -> np.ndarray:
        return self.params.detach().double().numpy().copy()


def new_gradient_search(dimension: int, learning_rate: float, config: dict, x0: np.ndarray | None = None) -> GradientState:
    """Start at x0 (default 0: a controller that drives straight at half gas)."""
    x0 = np.zeros(dimension) if x0 is None else np.asarray(x0, dtype=np.float64)
    params = torch.tensor(x0, dtype=torch.float32, requires_grad=True)
    return GradientState(x0=x0, config=config, params=params, optimizer=torch.optim.Adam([params], lr=learning_rate))


def save_gradient_search(path: str | Path, state: GradientState) -> None:
    moments = state.optimizer.state.get(state.params, {})
    zeros = np.zeros(len(state.params), np.float32)
    save_npz(path, compress=False, **record_arrays(state, generations=state.generations_done,
                                                   learning_rate=state.optimizer.param_groups[0]["lr"]),
             params=state.params.detach().numpy(), exp_avg=moments["exp_avg"].numpy() if moments else zeros,
             exp_avg_sq=moments["exp_avg_sq"].numpy() if moments else zeros,
             adam_steps=np.array(float(moments["step"]) if moments else 0.0))


def load_gradient_search(path: str | Path, config: dict, log_columns: list[str], flags: dict[str, str]) -> GradientState:
    """A saved gradient search, exactly as it was, or a DataError if the file is unreadable,
    was started with other settings (named by their ``flags``) or does not fit together."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("params", "exp_avg", "exp_avg_sq", "adam_steps")}
            generations = int(json.loads(str(data["meta"]))["generations"])
            record, meta = read_record(path, data, config, log_columns, generations, flags, _FIX, "gradient search state")
        learning_rate, adam_steps = float(meta["learning_rate"]), float(arrays["adam_steps"])
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable gradient search state ({type(error).__name__}); {_FIX}") from None
    shape = record["x0"].shape
    if any(arrays[key].dtype != np.float32 or arrays[key].shape != shape or not np.isfinite(arrays[key]).all()
           for key in ("params", "exp_avg", "exp_avg_sq")) or not adam_steps >= 0:
        raise DataError(f"{path}: damaged gradient search state (its arrays do not fit together); {_FIX}")
    params = torch.tensor(arrays["params"], requires_grad=True)
    optimizer = torch.optim.Adam([params], lr=learning_rate)
    if adam_steps:
        saved = {"step": torch.tensor(adam_steps), "exp_avg": torch.from_numpy(arrays["exp_avg"]),
                 "exp_avg_sq": torch.from_numpy(arrays["exp_avg_sq"])}
        optimizer.load_state_dict({"state": {0: saved}, "param_groups": optimizer.state_dict()["param_groups"]})
    return GradientState(params=params, optimizer=optimizer, generations_done=generations, **record)


def expected_rewards(dreams: DreamBatch, controller: LinearControllers, inputs: str, going: torch.Tensor, steps: int,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` steps of ``dreams`` driven by ``controller`` (reading ``inputs``), with gradients:
    going [B], P(each dream is still going) at the first step -> (the rewards summed, each
    weighted by P(still going) there [B]; P(still going) after them [B])."""
    earned = torch.zeros_like(going)
    for _ in range(steps):
        reward, p_end = dreams.expected_step(controller(dreams.controller_input(inputs)))
        earned = earned + going * reward
        going = going * (1 - p_end)
    return earned, going


def ascend_in_dreams(dreams: DreamBatch, state: GradientState, inputs: str, horizon: int, truncation: int) -> EpisodeResults:
    """Run ``dreams`` (B of them) for up to ``horizon`` steps with the controller of ``state``
    (reading ``inputs``, controller.CONTROLLER_INPUTS), updating it after every ``truncation``
    steps by ascent on the dreams' mean expected return. Returns each dream's expected return
    (float64 [B], what the controller earned while it learned) and the steps it ran (int64 [B],
    the same for all: the horizon, or fewer once no dream is likely to be still going)."""
    batch, device = len(dreams.z), dreams.device  # the controller's gradient comes back to its parameters on the CPU
    input_size = controller_input_size(inputs, dreams.mdrnn.z_size, dreams.mdrnn.hidden_size)
    returns, steps = torch.zeros(batch, dtype=torch.float64), 0
    going = torch.ones(batch, device=device)  # P(the dream is still going) before this step
    for start in range(0, horizon, truncation):
        controller = LinearControllers(state.params.to(device).expand(batch, -1), input_size)
        chunk = min(truncation, horizon - start)
        earned, going = expected_rewards(dreams, controller, inputs, going, chunk)
        state.optimizer.zero_grad()
        (-earned.mean()).backward(inputs=[state.params])  # C's gradient only: M stays as it is
        torch.nn.utils.clip_grad_norm_([state.params], GRADIENT_CLIP)
        state.optimizer.step()
        returns += earned.detach().double().cpu()
        steps += chunk
        dreams.detach()
        going = going.detach()
        if going.max() < STILL_GOING:
            break
    return EpisodeResults(returns.numpy(), np.full(batch, steps, dtype=np.int64))
