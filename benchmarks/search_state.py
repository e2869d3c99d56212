"""What the plain CMA-ES state costs: a search of the paper's size (867 parameters,
population 64) is run for --generations generations on a made-up fitness, saved as
cma_state.npz, and loaded back; loading replays every generation's ask and tell.
Prints the file's size and the seconds to save and to load. Usage:

    python benchmarks/search_state.py --generations 1800
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.cli import run_stage  # noqa: E402
from worldmodels.controller import parameter_count  # noqa: E402
from worldmodels.evolution import STATE_FILE, load_search, new_search, save_search  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=1800)
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=32 + 256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dimension = parameter_count(args.input_size)
    config = {"population": args.population, "benchmark": True}
    state = new_search(dimension, 0.1, args.population, 0, config)
    target = np.random.default_rng(0).normal(size=dimension)
    started = time.perf_counter()
    for generation in tqdm(range(args.generations), desc="generations"):
        candidates = np.asarray(state.es.ask())
        state.tell(candidates, -((candidates - target) ** 2).sum(axis=1))
        state.log.append({"generation": str(generation + 1)})
    searched = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / STATE_FILE
        started = time.perf_counter()
        save_search(path, state)
        saved = time.perf_counter() - started
        started = time.perf_counter()
        loaded = load_search(path, config, ["generation"])
        replayed = time.perf_counter() - started
        size = path.stat().st_size
    assert np.array_equal(loaded.es.mean, state.es.mean) and loaded.generation == state.generation
    print(f"{args.generations} generations of {args.population} x {dimension} parameters: the search's own ask/tell took "
          f"{searched:.1f} s; {STATE_FILE} is {size / 1e6:.2f} MB, saved in {saved:.3f} s, loaded (replayed) in {replayed:.1f} s "
          f"({1000 * replayed / args.generations:.1f} ms a generation)")


if __name__ == "__main__":
    run_stage(main)
