"""The two episode file formats, written and read only here.

Rollout files, ``data/rollout/<id>.npz`` (stage 01), one per episode of T steps:

    obs        uint8   [T, 64, 64, 3]  preprocessed frame seen *before* action t
    action     float32 [T, 3]          steering in [-1, 1], gas and brake in [0, 1]
    reward     float32 [T]             reward returned by env.step(action[t])
    terminated bool    [T]             the env ended the episode after action t
                                       (lap finished, or car left the playfield)
    done       bool    [T]             terminated or truncated (time limit) after action t
    source     str     []              what drove: "exploration", or the agent (its folder and
                                       fingerprints) and the noise on its parameters
    speed      float32 [T]             the car's true speed (m/s of the hull) before action t,
                                       which the agent never sees (optional: files written
                                       before it was recorded lack it; read_rollout_truth)
    tiles      int32   [T]             track tiles reached before action t (optional, as speed)
    frame_kind str     []              the kind of frame obs holds (frames.FRAME_KINDS; optional:
                                       files written before it was recorded hold the paper's)

so step t is (obs[t], action[t]) -> (reward[t], done[t]) and obs[t+1] is the next frame.
The frame after the last action is not stored: the last step has no next-frame target.

Series files, ``data/series/<id>.npz`` (stage 03), the same episode encoded by V:

    mu, logvar float16 [T, Z]  V's posterior for obs[t]
    action, reward, terminated, done as above
    vae        str []          the fingerprint of the V that encoded it (worldmodels.checkpoints)

``data/series/initial_latents.npz`` holds mu and logvar [N, Z] of every episode's first
frame (dreams start from these), ``ids`` [N] and ``vae``, as above.
"""

import sys
import zipfile
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
from tqdm import tqdm

from worldmodels.atomic import npz_bytes, save_bytes, save_npz
from worldmodels.constants import ACTION_SIZE
from worldmodels.errors import DataError, OutputError
from worldmodels.frames import FRAME_KINDS, FRAME_SIZE, PAPER_FRAME
from worldmodels.interrupt import Interrupted, stop_requested

EPISODE_GLOB = "ep*.npz"
INITIAL_LATENTS_FILE = "initial_latents.npz"
SKIP_FLAG = "--skip-bad-files"  # the stages' flag that leaves unreadable episode files out

T = TypeVar("T")


def episode_id(seed: int) -> str:
    """Episode files are named after the seed that generates them."""
    return f"ep{seed:08d}"


def list_episodes(folder: str | Path) -> list[Path]:
    """Episode files in a folder, sorted by name (the order splits are made in)."""
    return sorted(Path(folder).glob(EPISODE_GLOB))


def _check_steps(path: Path, arrays: dict[str, np.ndarray]) -> int:
    steps = len(arrays["action"])
    for key, dtype, shape in (
        ("action", np.float32, (steps, ACTION_SIZE)),
        ("reward", np.float32, (steps,)),
        ("terminated", np.bool_, (steps,)),
        ("done", np.bool_, (steps,)),
    ):
        if arrays[key].dtype != dtype or arrays[key].shape != shape:
            raise DataError(
                f"{path}: '{key}' is {arrays[key].dtype} {arrays[key].shape}, expected "
                f"{np.dtype(dtype)} {shape}; delete the file and re-run the stage that wrote it"
            )
    for key in ("action", "reward"):
        if not np.isfinite(arrays[key]).all():
            raise DataError(f"{path}: '{key}' holds NaN or inf; delete the file and re-run the stage that wrote it")
    if steps == 0:
        raise DataError(f"{path}: the episode has no steps; delete the file and re-run the stage that wrote it")
    return steps


def _load(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """``keys`` of an .npz file, and those of ``optional`` it holds."""
    try:
        with np.load(path, allow_pickle=False) as data:  # an object array would be a pickle: never loaded
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise DataError(
                    f"{path}: missing keys {missing}; delete the file and re-run the stage that wrote it"
                )
            return {k: data[k] for k in keys + tuple(k for k in optional if k in data.files)}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path}: unreadable ({type(error).__name__}: {error}); delete the file and re-run the stage that wrote it"
        ) from None


ROLLOUT_KEYS = ("obs", "action", "reward", "terminated", "done")
TRUTH_KEYS = ("speed", "tiles")  # what the env knows and the agent does not: for measurements only
SERIES_KEYS = ("mu", "logvar", "action", "reward", "terminated", "done", "vae")


def write_rollout(path: str | Path, obs, action, reward, terminated, done, source: str, speed=None, tiles=None,
                  frame_kind: str = PAPER_FRAME) -> None:
    save_bytes(path, rollout_bytes(path, obs, action, reward, terminated, done, source, speed, tiles, frame_kind))


def rollout_bytes(path: str | Path, obs, action, reward, terminated, done, source: str, speed=None, tiles=None,
                  frame_kind: str = PAPER_FRAME) -> bytes:
    """A checked rollout file's bytes (``path``, where it will go, names it in errors)."""
    arrays = dict(
        source=np.array(source),
        frame_kind=np.array(frame_kind),
        obs=np.asarray(obs, dtype=np.uint8),
        action=np.asarray(action, dtype=np.float32),
        reward=np.asarray(reward, dtype=np.float32),
        terminated=np.asarray(terminated, dtype=bool),
        done=np.asarray(done, dtype=bool),
    )
    if speed is not None:
        arrays.update(speed=np.asarray(speed, dtype=np.float32), tiles=np.asarray(tiles, dtype=np.int32))
    _check_rollout(Path(path), arrays)
    return npz_bytes(**arrays)


def _check_truth(path: Path, arrays: dict[str, np.ndarray], steps: int) -> None:
    for key, dtype in (("speed", np.float32), ("tiles", np.int32)):
        if key in arrays and (arrays[key].dtype != dtype or arrays[key].shape != (steps,) or not np.isfinite(arrays[key]).all()):
            raise DataError(f"{path}: '{key}' is not {np.dtype(dtype)} [{steps}] of finite values; "
                            "delete the file and re-run 01_generate_data.py")


def _check_rollout(path: Path, arrays: dict[str, np.ndarray]) -> None:
    steps = _check_steps(path, arrays)
    _check_truth(path, arrays, steps)
    _check_frame_kind(path, arrays.get("frame_kind", np.array(PAPER_FRAME)))
    expected = (steps, FRAME_SIZE, FRAME_SIZE, 3)
    if arrays["obs"].dtype != np.uint8 or arrays["obs"].shape != expected:
        raise DataError(
            f"{path}: 'obs' is {arrays['obs'].dtype} {arrays['obs'].shape}, expected uint8 {expected}; "
            "delete the file and re-run 01_generate_data.py"
        )


def read_rollout(path: str | Path) -> dict[str, np.ndarray]:
    """Load and validate one rollout file ("frame_kind" comes back as a str: the paper's for
    files written before the kind was recorded)."""
    path = Path(path)
    arrays = _load(path, ROLLOUT_KEYS, optional=("frame_kind",))
    _check_rollout(path, arrays)
    return arrays | {"frame_kind": str(arrays.get("frame_kind", PAPER_FRAME))}


def rollout_records_truth(path: str | Path) -> bool:
    """Whether a rollout file records the car's speed and tiles (an unreadable one answers yes:
    reading it then says what is wrong)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return set(TRUTH_KEYS) <= set(data.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return True


def read_rollout_truth(path: str | Path) -> dict[str, np.ndarray]:
    """The car's true speed float32 [T] and tiles reached int32 [T] of a rollout file, for
    measurements (a file from before they were recorded gets one line saying so)."""
    path = Path(path)
    if not rollout_records_truth(path):
        raise DataError(f"{path}: written before rollouts recorded the car's speed; collect the episodes again with 01_generate_data.py")
    arrays = _load(path, ("action",) + TRUTH_KEYS)
    _check_truth(path, arrays, len(arrays["action"]))
    return {key: arrays[key] for key in TRUTH_KEYS}


def read_rollout_source(path: str | Path) -> str:
    """What drove the episode of a rollout file, or of the series file encoded from it (files
    written before sources were recorded say so)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["source"]) if "source" in data.files else NOT_RECORDED
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: unreadable ({type(error).__name__}); delete the file and re-run 01_generate_data.py") from None


def _check_frame_kind(path: Path, kind: np.ndarray) -> str:
    if kind.dtype.kind != "U" or kind.shape != () or str(kind) not in FRAME_KINDS:
        raise DataError(f"{path}: 'frame_kind' is not one of {', '.join(FRAME_KINDS)}; delete the file and re-run 01_generate_data.py")
    return str(kind)


def read_rollout_frame_kind(path: str | Path) -> str:
    """The kind of frame a rollout file holds (frames.FRAME_KINDS): what it records, or the
    paper's for files written before the kind was recorded."""
    path = Path(path)
    return _check_frame_kind(path, _load(path, (), optional=("frame_kind",)).get("frame_kind", np.array(PAPER_FRAME)))


def read_frame_kind_of(files: list[Path], folder: str | Path, skip_bad: bool) -> str:
    """The one kind of frame of a folder's rollout files, each read (with ``skip_bad``, those
    that can be; ``map_episodes``), or ``frame_kind_of``'s one-line DataError."""
    return frame_kind_of(map_episodes(files, read_rollout_frame_kind, skip_bad, desc="reading frame kinds"), folder)


def frame_kind_of(kinds: dict[Path, str], folder: str | Path) -> str:
    """The one kind of frame of a folder's rollout files ({file: kind}), or a one-line
    DataError naming a file of each kind (V learns one kind; a folder holds one)."""
    first = {}
    for path, kind in kinds.items():
        first.setdefault(kind, path)
    if len(first) > 1:
        (kind_a, file_a), (kind_b, file_b) = list(first.items())[:2]
        raise DataError(f"{folder}: holds episodes of two kinds of frame ({file_a.name}: {kind_a}, {file_b.name}: {kind_b}); "
                        "V learns one: keep each kind in a folder of its own")
    return next(iter(first), PAPER_FRAME)


def read_rollout_frames(path: str | Path) -> np.ndarray:
    """Only the frames of a rollout, uint8 [T, 64, 64, 3] (what V trains on)."""
    path = Path(path)
    obs = _load(path, ("obs",))["obs"]
    if obs.dtype != np.uint8 or obs.ndim != 4 or obs.shape[1:] != (FRAME_SIZE, FRAME_SIZE, 3) or len(obs) == 0:
        raise DataError(
            f"{path}: 'obs' is {obs.dtype} {obs.shape}, expected uint8 [T, 64, 64, 3]; "
            "delete the file and re-run 01_generate_data.py"
        )
    return obs


def rollout_length(path: str | Path) -> int:
    """Steps of a rollout file, validating it without decompressing its frames: the small
    arrays are read and checked, the frames' dtype and shape come from their header."""
    path = Path(path)
    steps = _check_steps(path, _load(path, ROLLOUT_KEYS[1:]))
    try:
        with zipfile.ZipFile(path) as archive, archive.open("obs.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(member)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: unreadable frames ({type(error).__name__}: {error}); "
                        "delete the file and re-run 01_generate_data.py") from None
    expected = (steps, FRAME_SIZE, FRAME_SIZE, 3)
    if dtype != np.uint8 or shape != expected:
        raise DataError(f"{path}: 'obs' is {dtype} {shape}, expected uint8 {expected}; delete the file and re-run 01_generate_data.py")
    return steps


AGENT_SOURCE = "agent:"  # how the source of an episode an agent drove (01 --policy) begins
NOT_RECORDED = "not recorded"  # the source of an episode whose file predates sources


def driven_by_agent(source: str) -> bool:
    """Whether an episode of this source (read_rollout_source, read_series) was driven by an agent."""
    return str(source).startswith(AGENT_SOURCE)


def write_series(path: str | Path, mu, logvar, action, reward, terminated, done, vae: str, source: str | None = None) -> None:
    """source: what drove the episode, as its rollout file records it (read_rollout_source)."""
    arrays = dict(
        vae=np.array(vae),
        mu=np.asarray(mu, dtype=np.float16),
        logvar=np.asarray(logvar, dtype=np.float16),
        action=np.asarray(action, dtype=np.float32),
        reward=np.asarray(reward, dtype=np.float32),
        terminated=np.asarray(terminated, dtype=bool),
        done=np.asarray(done, dtype=bool),
    )
    if source is not None:
        arrays["source"] = np.array(source)
    _check_series(Path(path), arrays)
    save_npz(path, compress=False, **arrays)


def _check_series(path: Path, arrays: dict[str, np.ndarray]) -> None:
    steps = _check_steps(path, arrays)
    if arrays["vae"].dtype.kind != "U" or arrays["vae"].shape != ():
        raise DataError(f"{path}: 'vae' is not the fingerprint of a V; delete the file and re-run 03_generate_rnn_data.py")
    z_size = arrays["mu"].shape[-1] if arrays["mu"].ndim == 2 else -1
    for key in ("mu", "logvar"):
        if arrays[key].dtype != np.float16 or arrays[key].shape != (steps, z_size):
            raise DataError(
                f"{path}: '{key}' is {arrays[key].dtype} {arrays[key].shape}, expected float16 [{steps}, Z]; "
                "delete the file and re-run 03_generate_rnn_data.py"
            )
        if not np.isfinite(arrays[key]).all():
            raise DataError(f"{path}: '{key}' holds NaN or inf; delete the file and re-run 03_generate_rnn_data.py")


def read_series(path: str | Path) -> dict[str, np.ndarray]:
    """Load and validate one series file ("vae" comes back as a str, and "source", what drove
    the episode, too: NOT_RECORDED in files encoded before sources were)."""
    path = Path(path)
    arrays = _load(path, SERIES_KEYS, optional=("source",))
    _check_series(path, arrays)
    return arrays | {"vae": str(arrays["vae"]), "source": str(arrays.get("source", NOT_RECORDED))}


def series_vae(path: str | Path) -> str | None:
    """The fingerprint of the V that encoded a series file, without reading its arrays; None
    if the file is missing, unreadable or records none (written by an earlier version)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["vae"]) if "vae" in data.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def write_initial_latents(path: str | Path, ids: list[str], mu: np.ndarray, logvar: np.ndarray, vae: str) -> None:
    save_npz(path, compress=False, ids=np.asarray(ids), mu=mu.astype(np.float16), logvar=logvar.astype(np.float16),
             vae=np.array(vae))


def read_initial_latents(path: str | Path, z_size: int, vae: str) -> dict[str, np.ndarray]:
    """The first latents dreams start from; they must have M's latent size and come from
    the V whose fingerprint is ``vae`` (the one M was trained on)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; run 03_generate_rnn_data.py first (or pass --series-dir)")
    arrays = _load(path, ("ids", "mu", "logvar", "vae"))
    for key in ("mu", "logvar"):
        if arrays[key].ndim != 2 or len(arrays[key]) == 0 or not np.isfinite(arrays[key]).all():
            raise DataError(f"{path}: '{key}' is {arrays[key].dtype} {arrays[key].shape} or holds NaN or inf, expected finite [N, Z]; "
                            "re-run 03_generate_rnn_data.py")
    if arrays["mu"].shape[1] != z_size:
        raise DataError(f"{path}: latents of size {arrays['mu'].shape[1]}, but M models z of size {z_size}; "
                        "re-run 03_generate_rnn_data.py --overwrite with the V that M was trained on")
    if str(arrays["vae"]) != vae:
        raise DataError(f"{path}: encoded by V {arrays['vae']}, but M was trained on V {vae}'s latents; "
                        "re-run 03_generate_rnn_data.py with the V that M was trained on")
    return arrays


def read_series_of(folder: str | Path, vae: str, skip_bad: bool = False) -> list[dict[str, np.ndarray]]:
    """Every series file of ``folder`` (with ``skip_bad``, those that can be read), which must
    all have been encoded by the V whose fingerprint is ``vae``."""
    episodes = map_episodes(require_episodes(folder, "03_generate_rnn_data.py"), read_series, skip_bad, desc="reading series")
    for path, episode in episodes.items():
        if episode["vae"] != vae:
            raise DataError(f"{path}: encoded by V {episode['vae']}, not by this V ({vae}); re-run 03_generate_rnn_data.py with it")
    return list(episodes.values())


def require_episodes(folder: str | Path, previous_stage: str) -> list[Path]:
    """Episode files of a stage's input folder, or a DataError telling which stage to run."""
    if not Path(folder).is_dir():
        raise DataError(f"{folder}: no such folder; run {previous_stage} first (or pass the folder it wrote to)")
    files = list_episodes(folder)
    if not files:
        raise DataError(f"{folder}: no episode files ({EPISODE_GLOB}) in the folder; run {previous_stage} first")
    return files


def map_episodes(files: list[Path], fn: Callable[[Path], T], skip_bad: bool, desc: str = "checking episode files") -> dict[Path, T]:
    """fn(path) for every file, in order. A file that cannot be used (fn raises a DataError
    other than an OutputError) stops the stage with that error or, with ``skip_bad``, is
    left out with a warning and counted. A Ctrl-C stops between files."""
    results, skipped = {}, 0
    for count, path in enumerate(tqdm(files, desc=desc, dynamic_ncols=True)):
        if stop_requested():
            raise Interrupted(f"stopped after {count} of {len(files)} files ({desc}); what is written is kept: re-run to go on")
        try:
            results[path] = fn(path)
        except OutputError:
            raise  # a full disk is not the file's fault: no file is skipped for it
        except DataError as error:
            if not skip_bad:
                raise DataError(f"{error} (or pass {SKIP_FLAG} to leave such files out)") from None
            tqdm.write(f"warning: skipping {error}", file=sys.stderr)
            skipped += 1
    if skipped:
        print(f"warning: skipped {skipped} of {len(files)} episode files that cannot be used ({SKIP_FLAG})", file=sys.stderr)
    if files and not results:
        raise DataError(f"{files[0].parent}: none of the {len(files)} episode files can be used; re-run the stage that wrote them")
    return results
