"""Vision models side by side, trained on the same data: one checkpoint folder per model
(its vae.pt, and when there its M's log and the controller's evaluation.csv), all scored on
the same held-out frames (stage 02's: spread over the last HELD_OUT_FRACTION of the sorted
episodes of --rollout-dir), each frame decoded from V's mu:

- pixel error: summed squared error per frame (stage 02's reconstruction term);
- sharpness: the decodings' image-gradient energy over the real frames' (1 = as sharp;
  a VAE's blur shows as less than 1);
- road IoU: the road's grey pixels in the decoding against the real frame's, over the whole
  frame and in the 32 x 32 window ahead of and around the car, where driving looks;
- car IoU: the car's red pixels (the car sits at the same place in every frame, so this
  says whether V draws it at all);
- training: seconds per epoch (from stage 02's log), and seconds per batch and peak memory of
  a process that trains it (batch 100, random frames, measured here in a fresh process per
  kind, one after another);
- M: held-out z NLL (nats per latent dimension; each V's latents are another space, so
  compare with care) and reward MSE, from the last row of M's log;
- C: the evaluation's mean ± std and its episode count, from evaluation.csv.

Prints a markdown table and writes a PNG: real frames, then each model's decodings.

    python benchmarks/vision_compare.py checkpoints/vision/vae checkpoints/vision/vaegan \\
        --rollout-dir data/medium/rollout --picture docs/vision_compare.png
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.checkpoints import VAE_FILE, VISION, load_model  # noqa: E402
from worldmodels.cli import finite_float, load_stage_script, run_stage  # noqa: E402
from worldmodels.data import split_episodes  # noqa: E402
from worldmodels.episodes import require_episodes  # noqa: E402
from worldmodels.logs import read_csv  # noqa: E402
from worldmodels.pictures import enlarge, save_png  # noqa: E402
from worldmodels.vision import VISION_MODELS, TrainingSettings, decode_frames  # noqa: E402

NEAR_CAR = (slice(28, 60), slice(16, 48))  # rows, columns: the window ahead of and around the car (rows 51-57, columns 31-32)
PICTURE_FRAMES = 8


def road_mask(frames: np.ndarray) -> np.ndarray:
    """uint8 [N, 64, 64, 3] -> bool [N, 64, 64]: grey pixels (the road; grass is green, curbs red and white)."""
    f = frames.astype(np.int16)
    return (f.max(axis=-1) - f.min(axis=-1) < 30) & (f.mean(axis=-1) > 60) & (f.mean(axis=-1) < 170)


def car_mask(frames: np.ndarray) -> np.ndarray:
    """uint8 [N, 64, 64, 3] -> bool [N, 64, 64]: red pixels (the car; the curbs' red is outside NEAR_CAR's centre only rarely)."""
    f = frames.astype(np.int16)
    return (f[..., 0] > f[..., 1] + 60) & (f[..., 0] > f[..., 2] + 60)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks [N, H, W], pooled over all frames (NaN if both are empty)."""
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else float("nan")


def gradient_energy(frames: np.ndarray) -> float:
    """Mean squared difference between neighbouring pixels (both directions), frames uint8 [N, H, W, 3]."""
    f = frames.astype(np.float32) / 255
    return float((np.diff(f, axis=1) ** 2).mean() + (np.diff(f, axis=2) ** 2).mean())


def frame_scores(real: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    pixel = ((decoded.astype(np.float32) - real.astype(np.float32)) / 255) ** 2
    near = (slice(None), *NEAR_CAR)
    return {"pixel_error": float(pixel.reshape(len(real), -1).sum(axis=1).mean()),
            "sharpness": gradient_energy(decoded) / gradient_energy(real),
            "road_iou": iou(road_mask(real), road_mask(decoded)),
            "road_iou_near_car": iou(road_mask(real)[near], road_mask(decoded)[near]),
            "car_iou": iou(car_mask(real)[near], car_mask(decoded)[near])}


def training_probe(kind: str, steps: int) -> None:
    """(in a fresh process) Seconds per training step of batch 100 and peak resident memory, as JSON."""
    torch.manual_seed(0)
    model = VISION_MODELS[kind]()
    optimizer, settings = model.make_optimizer(1e-4), TrainingSettings(pixel_weight=0.5)
    x = torch.rand(100, 3, 64, 64)
    model.train_step(x, optimizer, settings)  # the first step allocates
    started = time.perf_counter()
    for _ in range(steps):
        model.train_step(x, optimizer, settings)
    print(json.dumps({"seconds_per_batch": (time.perf_counter() - started) / steps,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def rows_if_any(path: Path) -> list[dict[str, str]]:
    """A log's rows, or none if the stage that writes it has not run in that folder."""
    return read_csv(path) if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", help="checkpoint folders, each with a vae.pt")
    parser.add_argument("--rollout-dir", default="data/medium/rollout")
    parser.add_argument("--held-out-fraction", type=finite_float, default=0.05)
    parser.add_argument("--frames", type=int, default=3000, help="held-out frames scored (at most)")
    parser.add_argument("--probe-steps", type=int, default=10, help="training steps timed per kind (0: no probe)")
    parser.add_argument("--picture", default="", help="PNG of real frames over each model's decodings")
    parser.add_argument("--training-probe", choices=sorted(VISION_MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.training_probe:
        return training_probe(args.training_probe, args.probe_steps)

    stage02, stage03 = load_stage_script("02_train_vae.py"), load_stage_script("03_generate_rnn_data.py")
    _, held_out_files = split_episodes(require_episodes(args.rollout_dir, "01_generate_data.py"), args.held_out_fraction)
    real = stage02.held_out_frames(held_out_files, args.frames, skip_bad=False)
    print(f"{len(real)} held-out frames from {len(held_out_files)} episodes of {args.rollout_dir}")
    models = {folder: load_model(Path(folder) / VAE_FILE, VISION) for folder in args.folders}
    probes = {}
    for kind in sorted({vae.kind for vae in models.values()}) if args.probe_steps else []:
        out = subprocess.run([sys.executable, __file__, "--training-probe", kind, "--probe-steps", str(args.probe_steps)],
                             capture_output=True, text=True, check=True).stdout
        probes[kind] = json.loads(out.strip().splitlines()[-1])

    rows, pictures = [], [real[np.linspace(0, len(real) - 1, PICTURE_FRAMES).astype(int)]]
    for folder, vae in models.items():
        mu, _ = stage03.encode_frames(vae, real, 500, torch.device("cpu"))
        decoded = decode_frames(vae, torch.from_numpy(mu))
        pictures.append(decoded[np.linspace(0, len(real) - 1, PICTURE_FRAMES).astype(int)])
        scores = frame_scores(real, decoded)
        log, evaluation = rows_if_any(Path(folder) / "vae_log.csv"), rows_if_any(Path(folder) / "evaluation.csv")
        m = (rows_if_any(Path(folder) / "mdrnn_log.csv") or [{}])[-1]
        returns = np.array([float(r["return"]) for r in evaluation])
        probe = probes.get(vae.kind, {})
        rows.append([folder, vae.kind, f"{scores['pixel_error']:.1f}", f"{scores['sharpness']:.2f}", f"{scores['road_iou']:.3f}",
                     f"{scores['road_iou_near_car']:.3f}", f"{scores['car_iou']:.3f}",
                     f"{np.mean([float(r['seconds']) for r in log]):.0f}" if log else "",
                     f"{probe['seconds_per_batch']:.2f}" if probe else "", f"{probe['peak_mb']:.0f}" if probe else "",
                     m.get("held_out_nll", ""), m.get("held_out_reward", ""),
                     f"{returns.mean():.1f} ± {returns.std():.1f} ({len(returns)})" if len(returns) else ""])
    header = ["folder", "V", "pixel error", "sharpness", "road IoU", "road IoU near car", "car IoU", "s/epoch (log)",
              "s/batch (probe)", "peak MB (probe)", "M held-out z NLL", "M reward MSE", "C real score (episodes)"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.picture:
        save_png(args.picture, enlarge(np.concatenate([np.concatenate(list(p), axis=1) for p in pictures]), 2))
        print(f"wrote {args.picture}: held-out frames (top row), then each folder's decodings in the order given")


if __name__ == "__main__":
    run_stage(main)
