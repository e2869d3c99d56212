"""Model checkpoints: a state_dict plus the sizes needed to rebuild the model.

A checkpoint is a dict {"kind", "config", "state_dict", ...extra} written atomically.
A training checkpoint (stages 02 and 04) also holds the optimizer and a TrainingProgress:
how far the run got and its random states, so a resumed run continues exactly as an
uninterrupted one would have (on the CPU).
"""

import hashlib
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from worldmodels.atomic import save_torch
from worldmodels.controller import controller_input_size, parameter_count, widen_controller
from worldmodels.errors import DataError
from worldmodels.frames import PAPER_FRAME
from worldmodels.logs import log_fits
from worldmodels.mdrnn import MDNRNN
from worldmodels.vision import VISION_MODELS, VisionModel

VAE_FILE = "vae.pt"
MDRNN_FILE = "mdrnn.pt"
CONTROLLER_FILE = "controller.pt"

CONTROLLER_PRODUCER = "05_train_controller.py"
VISION = "vision"  # load_model's kind for V: any vision model, rebuilt as the kind its checkpoint records
_MODELS = {**{kind: (cls, "02_train_vae.py") for kind, cls in VISION_MODELS.items()}, "mdrnn": (MDNRNN, "04_train_rnn.py")}


def _kinds(kind: str) -> tuple[str, ...]:
    """The checkpoint kinds that ``kind`` accepts: every vision kind for VISION, else itself."""
    return tuple(VISION_MODELS) if kind == VISION else (kind,)


def member_file(member: int) -> str:
    """M's file (member 0) or ensemble member k's, trained beside it on the same latents."""
    return MDRNN_FILE if member == 0 else f"mdrnn_member{member}.pt"


def default_device() -> torch.device:
    """CUDA when the user has it, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fingerprint(model: nn.Module | dict[str, torch.Tensor]) -> str:
    """12 hex digits of the SHA-256 of a model's weights (or of named tensors): the same
    weights give the same fingerprint whatever file holds them, and anything made from a
    model (series files, M, C) records its fingerprint to say which model it belongs with."""
    digest = hashlib.sha256()
    for name, tensor in sorted((model.state_dict() if isinstance(model, nn.Module) else model).items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def model_checkpoint(kind: str, model: nn.Module, made_from: dict[str, str] | None = None,
                     dtype: torch.dtype | None = None) -> dict:
    """What a model's checkpoint holds (tensors and plain values only): the weights (as
    ``dtype`` if given: loading turns them back into the model's float32), the config that
    rebuilds the model and the fingerprints of the models it was made from (M: V's)."""
    state = {k: v.detach().cpu().to(dtype or v.dtype) for k, v in model.state_dict().items()}
    return {"kind": kind, "config": model.config(), "state_dict": state, "made_from": made_from or {}}


def save_model(path: str | Path, kind: str, model: nn.Module, made_from: dict[str, str] | None = None,
               dtype: torch.dtype | None = None, **extra: Any) -> None:
    """``model_checkpoint`` and ``extra`` (plain values), written atomically."""
    save_torch(path, {**model_checkpoint(kind, model, made_from, dtype), **extra})


def load_checkpoint(path: str | Path, kind: str, producer: str) -> dict:
    """Read a checkpoint dict, or a DataError naming the file and the script that makes it.

    Files are read with ``weights_only=True``: tensors and plain values only, so a crafted
    file cannot run code; one that holds other objects is refused. The keys its kind needs
    must be there and every tensor must be finite. ``kind`` VISION accepts any vision model."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; run {producer} first")
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a checkpoint; name the .pt file in it that {producer} wrote")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols it reads anyway
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        if "GLOBAL" in str(error):  # the weights-only unpickler met a class or function
            raise DataError(f"{path}: refused: it holds Python objects besides tensors and plain values, and loading "
                            f"those could run code; delete it and re-run {producer}") from None
        if not _looks_like_torch_file(path):  # good data of another kind: never advise deleting it
            raise DataError(f"{path}: not a checkpoint (not a file torch writes); name the .pt file that {producer} wrote") from None
        raise DataError(f"{path}: unreadable ({type(error).__name__}); delete it and re-run {producer}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") not in _kinds(kind):
        found = f" but a {checkpoint['kind']!r} one" if isinstance(checkpoint, dict) and isinstance(checkpoint.get("kind"), str) else ""
        raise DataError(f"{path}: not a {kind} checkpoint{found}; re-run {producer}")
    role = "controller" if kind == "controller" else "model"
    missing = [key for key, kinds in _REQUIRED.items() if not isinstance(checkpoint.get(key), kinds.get(role, object))]
    if missing:
        raise DataError(f"{path}: {', '.join(missing)} missing or of the wrong type (written by another version of this code?); "
                        f"delete it and re-run {producer}")
    tensors = checkpoint["state_dict"] if "state_dict" in checkpoint else {"params": checkpoint["params"]}
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise DataError(f"{path}: '{name}' is not a tensor; delete it and re-run {producer}")
        if not torch.isfinite(tensor).all():
            raise DataError(f"{path}: '{name}' holds NaN or inf; delete it and re-run {producer}")
    if checkpoint["kind"] in VISION_MODELS:  # a V saved before the kind of frame was recorded saw the paper's
        checkpoint["config"] = {"frame_kind": PAPER_FRAME} | checkpoint["config"]
    return checkpoint


def _looks_like_torch_file(path: Path) -> bool:
    """A .pt file, or a zip archive holding a pickle as torch.save writes (a rollout, series
    or other .npz is a zip of .npy files; a CSV is text)."""
    if path.suffix == ".pt":
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


# what a model's (V's or M's) and a controller's checkpoint must hold, with its type (beyond "kind")
_REQUIRED = {
    "config": {"model": dict, "controller": dict},
    "state_dict": {"model": dict},
    "params": {"controller": torch.Tensor},
    "generation": {"controller": int},
}


def load_weights(model: nn.Module, state_dict: dict, path: Path, fix: str) -> None:
    """model.load_state_dict, with a one-line DataError when the names or shapes differ (a
    checkpoint from another version of the code, or of other sizes)."""
    expected = model.state_dict()
    missing, unexpected = sorted(expected.keys() - state_dict.keys()), sorted(state_dict.keys() - expected.keys())
    if missing or unexpected:
        raise DataError(f"{path}: its weights do not fit this code's model (missing {missing[:3]}, unexpected {unexpected[:3]}; "
                        f"from another version of the code?); {fix}")
    wrong = [f"{k} {tuple(state_dict[k].shape)} not {tuple(v.shape)}" for k, v in expected.items() if state_dict[k].shape != v.shape]
    if wrong:
        raise DataError(f"{path}: weights of other shapes ({', '.join(wrong[:3])}); {fix}")
    model.load_state_dict(state_dict)


def load_companion(path: str | Path, model: nn.Module) -> None:
    """Load into ``model`` the companion a training checkpoint keeps beside its own model
    (training.TrainingRun.companion: the M of a task-aware V)."""
    companion = load_checkpoint(path, VISION, "02_train_vae.py").get("companion")
    if not isinstance(companion, dict):
        raise DataError(f"{path}: holds no M trained beside V (a V trained without --task-weight); pass --restart to train anew")
    load_weights(model, companion, Path(path), "pass --restart to train anew")


def load_model(path: str | Path, kind: str, **expected_config: Any) -> nn.Module:
    """Rebuild a model from its checkpoint in eval mode on the CPU, as the kind the
    checkpoint records (``kind`` VISION: whichever vision model V is).

    ``expected_config`` (e.g. z_size=32) must match what the checkpoint was built with. The
    model carries ``made_from``: the fingerprints of the models it was made from, as its
    checkpoint records them (M: {"vae": ...}; V: {})."""
    return build_model(load_checkpoint(path, kind, _MODELS[_kinds(kind)[0]][1]), path, **expected_config)


def build_model(checkpoint: dict, path: str | Path, **expected_config: Any) -> nn.Module:
    """The model a checkpoint dict holds (one ``load_checkpoint`` checked), in eval mode on
    the CPU, as ``load_model`` describes; ``path`` names where it came from in errors."""
    cls, producer = _MODELS[checkpoint["kind"]]
    kind = checkpoint["kind"]
    config = checkpoint["config"]
    for key, value in expected_config.items():
        if config.get(key) != value:
            raise DataError(f"{path}: built with {key}={config.get(key)!r}, expected {value!r}; re-run {producer} with matching sizes")
    try:
        model = cls(**config)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DataError(f"{path}: its config {config} does not build a {kind} ({type(error).__name__}); "
                        f"delete it and re-run {producer}") from None
    load_weights(model, checkpoint["state_dict"], Path(path), f"re-run {producer}")
    model.made_from = _made_from(checkpoint, path, f"delete it and re-run {producer}")
    return model.eval()


def _made_from(checkpoint: dict, path: str | Path, fix: str) -> dict[str, str]:
    """The fingerprints a checkpoint records of the models it was made from ({} if none)."""
    made_from = checkpoint.get("made_from", {})
    if not (isinstance(made_from, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in made_from.items())):
        raise DataError(f"{path}: 'made_from' is not a table of model fingerprints; {fix}")
    return made_from


def save_controller(path: str | Path, params: np.ndarray, config: dict, generation: int, **extra: Any) -> None:
    """C's flat parameters [P], the config of the V and M it acts on, and the generation
    of the search that kept it (plain values only)."""
    save_torch(path, {"kind": "controller", "config": config, "params": torch.as_tensor(params, dtype=torch.float32),
                      "generation": int(generation), **extra})


def training_history(checkpoint: dict) -> list[dict]:
    """The searches that made a saved controller, oldest first, each {"world": "real", "dream" or
    "imitation" (M's action head),
    "generation": the generation of that search it was kept at, "from": the controller it started
    from ("zero", or its path and fingerprint)} and, for a search by gradient in the dream,
    "method": "gradient" (CMA-ES otherwise), and for a dream search kept by its real checks
    (05 --keep-by real), "kept_by": "real checks". A file saved before histories were recorded
    gives its last search alone, from "unrecorded"."""
    history = checkpoint.get("history")
    if isinstance(history, list) and history and all(isinstance(phase, dict) for phase in history):
        return history
    return [{"world": checkpoint.get("trained_in", "real"), "generation": int(checkpoint.get("generation", 0)),
             "from": "unrecorded"}]


def describe_training(checkpoint: dict) -> str:
    """e.g. "generation 30 of a search in the dream, then generation 40 of a search in the real env"
    (a gradient search: "of a gradient search in the dream"; M's action head, 04 --action-head:
    "M's action head, imitating a driver"; kept by the real checks: "... in the dream, kept by its
    checks on the validation tracks")."""
    def describe(phase: dict) -> str:
        if phase.get("world") == "imitation":
            return "M's action head, imitating a driver"
        method = "gradient " if phase.get("method") == "gradient" else ""
        kept = ", kept by its checks on the validation tracks" if phase.get("kept_by") == "real checks" else ""
        return (f"generation {phase.get('generation')} of a {method}search in the "
                f"{'dream' if phase.get('world') == 'dream' else 'real env'}{kept}")
    return ", then ".join(describe(phase) for phase in training_history(checkpoint))


MODEL_KEYS = ("vae", "mdrnn")  # a controller config's fingerprints of the V and M it was made for


def controller_config(vae: nn.Module, mdrnn: nn.Module, inputs: str) -> dict:
    """What a controller for this V and M records, and must match: what it reads (one of
    controller.CONTROLLER_INPUTS; "use_cell" is recorded only when it reads c, so that the
    configs of controllers that read z or [z, h] stay as they were), its input size and the
    fingerprints of the V and M it belongs with."""
    return config_reading({"z_size": vae.z_size, "hidden_size": mdrnn.hidden_size, "vae": fingerprint(vae),
                           "mdrnn": fingerprint(mdrnn)}, inputs)


def config_reading(config: dict, inputs: str) -> dict:
    """The config of a controller for the same V and M as ``config`` that reads ``inputs``."""
    models = {k: v for k, v in config.items() if k not in ("input_size", "use_hidden", "use_cell")}
    return {"input_size": controller_input_size(inputs, config["z_size"], config["hidden_size"]), "use_hidden": inputs != "z",
            **({"use_cell": True} if inputs == "zhc" else {}), **models}


def controller_inputs(config: dict) -> str:
    """What a controller of this config reads (configs from before "use_hidden" was recorded: [z, h])."""
    return "zhc" if config.get("use_cell") else "zh" if config.get("use_hidden", True) else "z"


def load_controller(path: str | Path, config: dict, same_models: bool = True) -> dict:
    """A saved controller checkpoint, which must fit this choice of inputs and, with
    ``same_models``, have been made for the very V and M whose fingerprints ``config`` holds
    (without: of their sizes, e.g. to start a search from it)."""
    checkpoint = load_checkpoint(path, "controller", CONTROLLER_PRODUCER)
    sizes = lambda c: {k: v for k, v in c.items() if k not in MODEL_KEYS}
    if sizes(checkpoint["config"]) != sizes(config):
        raise DataError(f"{path}: built for {sizes(checkpoint['config'])}, not {sizes(config)}; train one for this V and M "
                        f"with {CONTROLLER_PRODUCER} --restart")
    if same_models and checkpoint["config"] != config:
        raise DataError(f"{path}: made for other models than these "
                        f"({_differences({k: checkpoint['config'].get(k) for k in MODEL_KEYS}, {k: config[k] for k in MODEL_KEYS})}); "
                        f"train one for this V and M with {CONTROLLER_PRODUCER} --restart")
    if checkpoint["params"].shape != (parameter_count(config["input_size"]),):
        raise DataError(f"{path}: {tuple(checkpoint['params'].shape)} parameters, expected "
                        f"({parameter_count(config['input_size'])},); delete it and re-run {CONTROLLER_PRODUCER}")
    return checkpoint


def load_search_start(path: str | Path, config: dict) -> dict:
    """A controller to start a search of ``config``'s controllers from: made for a V and M of
    these sizes (any weights), reading what config reads or less (z, or [z, h] for a search
    of [z, h, c] controllers). Its params come back widened to the search's inputs with zero
    weight on what it did not read, so the search starts from exactly how it drives."""
    reads, inputs = controller_inputs(load_checkpoint(path, "controller", CONTROLLER_PRODUCER)["config"]), controller_inputs(config)
    if not inputs.startswith(reads):
        raise DataError(f"{path}: reads {reads}, more than this search's controllers ({inputs}); start from a controller that "
                        f"reads {inputs} or less, or pass --inputs {reads}")
    checkpoint = load_controller(path, config_reading(config, reads), same_models=False)
    params = widen_controller(checkpoint["params"], reads, inputs, config["z_size"], config["hidden_size"])
    return checkpoint | {"params": params}


def load_controller_for(path: str | Path, vae: nn.Module, mdrnn: nn.Module) -> tuple[dict, dict]:
    """The controller checkpoint at ``path`` and its config for this V and M: what C reads
    is read from the file, and C must have been made for these very models."""
    inputs = controller_inputs(load_checkpoint(path, "controller", CONTROLLER_PRODUCER)["config"])
    config = controller_config(vae, mdrnn, inputs)
    return load_controller(path, config), config


@dataclass
class TrainingProgress:
    """How far a training run got: whole epochs, then (after a Ctrl-C) batches of the next
    epoch with that epoch's running loss sums and seconds, and the random states to go on with."""
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in epoch + 1
    sums: dict[str, float] = field(default_factory=dict)  # loss sums over those batches
    seconds: float = 0.0  # time spent on those batches
    random_state: dict = field(default_factory=dict)
    log: list[dict[str, str]] = field(default_factory=list)  # the rows of the stage's CSV log, one per epoch done
    best_weights: dict | None = None  # with early stopping: the weights of the epoch with the best held-out loss so far

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value


def capture_random_state(rng: np.random.Generator | None = None) -> dict:
    """torch's global random state (CPU and CUDA) and, if given, a numpy generator's."""
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": rng.bit_generator.state if rng is not None else None}


def restore_random_state(state: dict, rng: np.random.Generator | None = None) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if rng is not None and state.get("numpy") is not None:
        rng.bit_generator.state = state["numpy"]


def training_checkpoint_bytes(model: nn.Module) -> int:
    """About what a training checkpoint of ``model`` takes on disk: its weights, Adam's two
    moments per weight and (with early stopping) the best epoch's weights, plus room for the
    log and pictures written beside it."""
    return 4 * sum(p.numel() * p.element_size() for p in model.parameters()) + 2**20


def save_training(path: str | Path, kind: str, model: nn.Module, optimizer: torch.optim.Optimizer, progress: TrainingProgress,
                  rng: np.random.Generator | None = None, **extra: Any) -> None:
    """Model, optimizer and progress, with the random states as they are now."""
    progress.random_state = capture_random_state(rng)
    save_model(path, kind, model, epoch=progress.epoch, optimizer=optimizer.state_dict(), progress=asdict(progress), **extra)


TRAINING_ONLY = ("dropout",)  # config entries that change how a model trains, not the weights it has
ADDABLE_HEADS = ("action_head",)  # heads a run may add to the model it starts from (--init-from): they start new


def _sizes(config: dict) -> dict:
    """A model config without TRAINING_ONLY entries: what another run's weights must match to start from."""
    return {key: value for key, value in config.items() if key not in TRAINING_ONLY}


def resume_training(path: str | Path, kind: str, model: nn.Module, optimizer: torch.optim.Optimizer, restart: bool,
                    log_columns: list[str], made_from: dict[str, str], rng: np.random.Generator | None = None,
                    init_from: str = "") -> TrainingProgress:
    """Load model, optimizer, progress (with its log, whose rows have ``log_columns``) and
    random states from a training checkpoint, which must have been made from the models
    ``made_from`` names (fingerprints). When there is none, or ``restart`` is set, a new
    run starts: from the weights of the checkpoint ``init_from`` if given (a model of the
    same sizes trained before, e.g. on an earlier round's data), else from scratch."""
    path = Path(path)
    if restart or not path.exists():
        if init_from:
            start = load_checkpoint(init_from, kind, _MODELS[kind][1])
            added = [head for head in ADDABLE_HEADS if model.config().get(head) and not start["config"].get(head)]
            if _sizes(start["config"]) | {head: True for head in added} != _sizes(model.config()):
                raise DataError(f"{init_from}: built with {_config_differences(_sizes(start['config']), _sizes(model.config()))}; "
                                "choose a --init-from built the same way")
            fresh = {k: v for k, v in model.state_dict().items() if k.split(".")[0] in added}  # a head it lacks starts new
            load_weights(model, start["state_dict"] | fresh, Path(init_from), "choose another --init-from")
            print(f"starting from the weights of {init_from}" + (f" ({', '.join(added)} new)" if added else ""))
        return TrainingProgress()
    checkpoint = load_checkpoint(path, VISION if kind in VISION_MODELS else kind, _MODELS[kind][1])
    if checkpoint["kind"] != kind:  # one vision model is never trained on as another
        raise DataError(f"{path}: a {checkpoint['kind']} checkpoint, not a {kind} one; go on training it with "
                        f"{_MODELS[kind][1]} --vision {checkpoint['kind']}, or pass --restart to train a new {kind}")
    if checkpoint["config"] != model.config():
        raise DataError(f"{path}: built with {_config_differences(checkpoint['config'], model.config())}; pass --restart to train "
                        "a new one")
    if "optimizer" not in checkpoint or "progress" not in checkpoint:
        raise DataError(f"{path}: holds no training state (a model saved for use only); pass --restart to train a new one")
    recorded = _made_from(checkpoint, path, "pass --restart to train a new one")
    if recorded != made_from:
        raise DataError(f"{path}: trained on data from other models ({_differences(recorded, made_from)}); "
                        "pass --restart to train a new one on this data")
    load_weights(model, checkpoint["state_dict"], path, "pass --restart to train a new one")
    learning_rates = [group["lr"] for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
        progress = TrainingProgress(**checkpoint["progress"])
        restore_random_state(progress.random_state, rng)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise DataError(f"{path}: its training state does not fit this code ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else ''}); pass --restart to train a new one") from None
    if not log_fits(progress.log, log_columns, progress.epoch):
        raise DataError(f"{path}: its log does not fit its {progress.epoch} epochs or this code's columns; pass --restart "
                        "to train a new one")
    for group, lr in zip(optimizer.param_groups, learning_rates):
        group["lr"] = lr  # the run's --lr, which may differ from the saved run's (e.g. lowered after a NaN loss)
    where = f"batch {progress.batch} of epoch {progress.epoch + 1}" if progress.batch else f"epoch {progress.epoch}"
    print(f"resuming from {path} after {where}")
    return progress


def _config_differences(recorded: dict, expected: dict) -> str:
    """'z_size=16, not z_size=32': the entries of two model configs that differ."""
    keys = [k for k in sorted(set(recorded) | set(expected)) if recorded.get(k) != expected.get(k)]
    return (", ".join(f"{k}={recorded.get(k)!r}" for k in keys) + ", not "
            + ", ".join(f"{k}={expected.get(k)!r}" for k in keys))


def _differences(recorded: dict[str, str], expected: dict[str, str]) -> str:
    """'vae 1a2b.. not 3c4d..' for each model whose fingerprint differs."""
    return ", ".join(f"{k} {recorded.get(k)} not {expected.get(k)}" for k in sorted(set(recorded) | set(expected))
                     if recorded.get(k) != expected.get(k))


def require_made_from(path: str | Path, model: nn.Module, expected: dict[str, str], fix: str) -> None:
    """A one-line DataError unless the model loaded from ``path`` was made from the models
    whose fingerprints ``expected`` gives."""
    if model.made_from != expected:
        raise DataError(f"{path}: made from other models than these ({_differences(model.made_from, expected)}); {fix}")


def load_vae_and_mdrnn(vae_path: str | Path, mdrnn_path: str | Path) -> tuple[VisionModel, MDNRNN]:
    """V and M from their checkpoints; M must have been trained on this V's latents."""
    vae = load_model(vae_path, VISION)
    mdrnn = load_model(mdrnn_path, "mdrnn", z_size=vae.z_size)
    require_made_from(mdrnn_path, mdrnn, {"vae": fingerprint(vae)},
                      f"M was trained on another V's latents: re-run 03_generate_rnn_data.py and 04_train_rnn.py with {vae_path}")
    return vae, mdrnn


def load_members(directory: str | Path, count: int, vae: nn.Module) -> list[MDNRNN]:
    """Ensemble members 1 .. count - 1 of ``directory`` (04_train_rnn.py --member k), each
    trained on this V's latents."""
    members = []
    for k in range(1, count):
        path = Path(directory) / member_file(k)
        if not path.exists():
            raise DataError(f"{path}: not found; train it with 04_train_rnn.py --member {k} (or use fewer --members)")
        member = load_model(path, "mdrnn", z_size=vae.z_size)
        require_made_from(path, member, {"vae": fingerprint(vae)},
                          f"it was trained on another V's latents: re-run 04_train_rnn.py --member {k} on this V's series")
        members.append(member)
    return members


def _header_only_log(path: Path) -> bool:
    """A CSV log with no rows: a run that stopped before its first epoch or generation ended
    wrote it, and it holds nothing to protect."""
    if path.suffix != ".csv":
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return sum(1 for line in log if line.strip()) <= 1
    except OSError:
        return False


def refuse_to_replace(state_path: str | Path, outputs: list[Path], restart: bool) -> None:
    """Outputs of an earlier run whose state is gone cannot be resumed; a new run would
    replace them, so it needs --restart."""
    state_path = Path(state_path)
    found = [path.name for path in outputs if path.exists() and not _header_only_log(path)]
    if found and not restart and not state_path.exists():
        raise DataError(f"{state_path.parent}: holds {', '.join(found)} from an earlier run but no {state_path.name} to resume it "
                        "from; pass --restart to replace them, or choose another folder")
