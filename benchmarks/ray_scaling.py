"""The Ray backend against the local pool, and on a simulated multi-node cluster.

A "generation" here is what stage 05 does each generation: CANDIDATES controllers (the
saved one plus noise, as CMA-ES samples them) each drive TRACKS full episodes with the fast
renderer and fast acting, through ``run_agent_parallel``.

1. Overhead: seconds per generation on the local pool and on a local Ray instance of the
   same width, alternating, ROUNDS times each; the results must be identical.
2. Scaling: a ``ray.cluster_utils.Cluster`` on this machine (a head with no CPUs and nodes
   of one CPU each) with 1, then 2 nodes; then, with 2 nodes, one node removed a few
   seconds into the generation, which must still finish with the same results.
3. Latency: milliseconds per trivial task through each backend.

Every Ray instance here binds to 127.0.0.1. Measure with nothing else running:

    python benchmarks/ray_scaling.py --checkpoint-dir pretrained
"""

import argparse
import os
import sys
import threading
import time
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before ray is imported: 127.0.0.1 only

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worldmodels.checkpoints import CONTROLLER_FILE, MDRNN_FILE, VAE_FILE, controller_inputs, load_controller_for, load_vae_and_mdrnn  # noqa: E402
from worldmodels.constants import MAX_EPISODE_STEPS  # noqa: E402
from worldmodels.env import TRAIN_SEED_BASE  # noqa: E402
from worldmodels.parallel import LocalPool, WorkerPool  # noqa: E402
from worldmodels.results import EpisodeResults  # noqa: E402
from worldmodels.rollout import run_agent_parallel, share_agent_models  # noqa: E402


def generation(pool: WorkerPool, models, params: np.ndarray, seeds: list[int], inputs: str) -> tuple[float, EpisodeResults]:
    started = time.perf_counter()
    results = run_agent_parallel(pool, models, params, seeds, MAX_EPISODE_STEPS, inputs=inputs, fast_render=True,
                                 fast_acting=True)
    return time.perf_counter() - started, results


def same(a: EpisodeResults, b: EpisodeResults) -> bool:
    return bool(np.array_equal(a.returns, b.returns) and np.array_equal(a.steps, b.steps))


def noop(x: int) -> int:
    return x


def latency(pool: WorkerPool, tasks: int) -> float:
    pool.map(noop, range(2 * pool.workers))  # workers started
    started = time.perf_counter()
    pool.map(noop, range(tasks))
    return (time.perf_counter() - started) / tasks * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-dir", type=Path, default=ROOT / "pretrained")
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--tracks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from worldmodels.parallel.ray_backend import RayPool

    vae, mdrnn = load_vae_and_mdrnn(args.checkpoint_dir / VAE_FILE, args.checkpoint_dir / MDRNN_FILE)
    controller, config = load_controller_for(args.checkpoint_dir / CONTROLLER_FILE, vae, mdrnn)
    rng = np.random.default_rng(0)
    mean = controller["params"].numpy()
    candidates = mean + rng.normal(0, 0.05, (args.candidates, mean.size)).astype(np.float32)
    params = np.repeat(candidates, args.tracks, axis=0)
    seeds = [TRAIN_SEED_BASE + e for e in range(args.tracks)] * args.candidates
    run = lambda pool, models: generation(pool, models, params, seeds, controller_inputs(config))
    print(f"a generation: {args.candidates} candidates x {args.tracks} tracks, full episodes, fast acting; "
          f"{args.workers} workers", flush=True)

    # 1. overhead against the local pool, alternating
    local_pool, ray_pool = LocalPool(args.workers), RayPool("local", args.workers)
    pools = {"local": (local_pool, share_agent_models(local_pool, vae, mdrnn)),
             "ray": (ray_pool, share_agent_models(ray_pool, vae, mdrnn))}
    for pool, models in pools.values():
        pool.map(noop, range(2 * pool.workers))  # workers started and warm: measured alike
    seconds, results = {name: [] for name in pools}, {}
    for round_ in range(args.rounds):
        for name, (pool, models) in pools.items():
            elapsed, results[name] = run(pool, models)
            seconds[name].append(elapsed)
            print(f"  round {round_ + 1}, {name}: {elapsed:.1f} s ({results[name].steps.sum() / elapsed:,.0f} steps/s)", flush=True)
    local, remote = np.mean(seconds["local"]), np.mean(seconds["ray"])
    print(f"overhead: local pool {local:.1f} s per generation, Ray {remote:.1f} s: {100 * (remote / local - 1):+.1f}%; "
          f"identical results: {same(results['local'], results['ray'])}")
    print(f"latency per trivial task: local pool {latency(local_pool, 200):.2f} ms, Ray {latency(ray_pool, 200):.2f} ms")
    reference = results["local"]
    local_pool.close()
    ray_pool.close()

    # 2. scaling on a simulated cluster, and a node that leaves mid-generation
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1)]
    ray.init(address=cluster.address, logging_level="WARNING")
    try:
        cluster.wait_for_nodes()
        with RayPool(workers=1) as pool:
            models = share_agent_models(pool, vae, mdrnn)
            pool.map(noop, range(2))
            one, _ = run(pool, models)
        print(f"cluster, 1 node of 1 CPU: {one:.1f} s per generation", flush=True)
        nodes.append(cluster.add_node(num_cpus=1))
        cluster.wait_for_nodes()
        with RayPool(workers=2) as pool:
            models = share_agent_models(pool, vae, mdrnn)
            pool.map(noop, range(4))
            two, two_results = run(pool, models)
            print(f"cluster, 2 nodes of 1 CPU: {two:.1f} s per generation ({one / two:.2f}x the 1-node rate); "
                  f"identical results: {same(two_results, reference)}", flush=True)
            leaving = threading.Timer(two / 3, lambda: cluster.remove_node(nodes.pop(), allow_graceful=False))
            leaving.start()
            lost, lost_results = run(pool, models)
            leaving.join()
        print(f"cluster, 2 nodes, one removed {two / 3:.1f} s into the generation: {lost:.1f} s; "
              f"identical results: {same(lost_results, reference)}")
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
