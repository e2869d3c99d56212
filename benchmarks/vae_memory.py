"""Peak memory of stage 02 at paper scale (2000 episodes, about 2M frames).

Builds a paper-sized data/rollout of hard links to existing real episodes (no extra disk),
runs 02_train_vae.py on it for a while and reports the process's peak resident memory
(VmHWM), sampled from /proc. Usage:

    python benchmarks/vae_memory.py --source data/small/rollout --seconds 180
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worldmodels.data import count_frames  # noqa: E402
from worldmodels.episodes import episode_id, list_episodes  # noqa: E402


def peak_rss_gb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="data/small/rollout", help="folder of real rollout files to link to")
    parser.add_argument("--episodes", type=int, default=2000, help="episodes in the linked dataset")
    parser.add_argument("--seconds", type=float, default=180, help="how long stage 02 runs before it is stopped")
    args = parser.parse_args()
    sources = list_episodes(args.source)
    if not sources:
        sys.exit(f"error: {args.source}: no episode files; run 01_generate_data.py (or a profile) first")
    with tempfile.TemporaryDirectory(dir=ROOT / "data") as tmp:
        rollout = Path(tmp) / "rollout"
        rollout.mkdir()
        for i in range(args.episodes):
            os.link(sources[i % len(sources)], rollout / f"{episode_id(i)}.npz")
        frames = count_frames(list_episodes(rollout))
        print(f"{args.episodes} episodes, {frames} frames ({frames * 64 * 64 * 3 / 1e9:.1f} GB as uint8)")
        command = [sys.executable, str(ROOT / "02_train_vae.py"), "--data-dir", str(rollout),
                   "--checkpoint-dir", str(Path(tmp) / "checkpoints"), "--epochs", "1"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started, peak = time.time(), 0.0
        while process.poll() is None and time.time() - started < args.seconds:
            peak = max(peak, peak_rss_gb(process.pid))
            time.sleep(0.5)
        if process.poll() is None:
            peak = max(peak, peak_rss_gb(process.pid))
            process.terminate()
        _, stderr = process.communicate()
        progress = [part for part in stderr.replace("\r", "\n").splitlines() if "epoch 1/1" in part]
        print(f"stage 02 peak resident memory: {peak:.2f} GB over {time.time() - started:.0f} s")
        if progress:
            print(f"last progress line: {progress[-1].strip()}")


if __name__ == "__main__":
    main()
