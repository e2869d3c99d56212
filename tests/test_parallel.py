"""The parallel map (worldmodels/parallel): every test that takes ``new_pool`` runs over every
backend (local, Ray); then what only the Ray backend survives, the equality of the two
backends for tiny stage 01 and stage 05 runs, and workers that read no paths. The Ray tests
are skipped, saying why, when ray is not installed."""

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import log_rows, save_untrained_agent, save_untrained_models

from worldmodels import interrupt
from worldmodels.checkpoints import load_checkpoint, load_vae_and_mdrnn
from worldmodels.controller import parameter_count
from worldmodels.episodes import list_episodes, read_rollout
from worldmodels.interrupt import Interrupted
from worldmodels.mdrnn import MDNRNN
from worldmodels.parallel import LocalPool, WorkerDied
from worldmodels.rollout import run_agent_episodes, run_agent_parallel, share_agent_models
from worldmodels.vision import ConvVAE


def _square(x):
    return x * x


def _fail(x):
    raise RuntimeError(f"bad item {x}")


def _die_on_two(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    return x


def _threads_and_sum(shared, x) -> tuple[int, float]:
    return torch.get_num_threads(), float(shared.get()["weights"].sum()) + x


@pytest.mark.parametrize("workers", [1, 2])
def test_map_keeps_the_items_order(new_pool, workers):
    with new_pool(workers) as pool:
        assert pool.map(_square, range(7)) == [x * x for x in range(7)]


def test_a_workers_exception_reaches_the_caller_with_the_workers_traceback(new_pool):
    with new_pool(2) as pool, pytest.raises(RuntimeError, match="bad item 3") as raised:
        pool.map(_fail, [3])
    assert 'in _fail\n    raise RuntimeError(f"bad item {x}")' in str(raised.value.__cause__)  # the traceback in the worker


def test_a_worker_that_keeps_dying_ends_the_map_with_a_clear_error(new_pool):
    started = time.monotonic()
    with new_pool(2, retries=1) as pool, pytest.raises(WorkerDied, match="_die_on_two.*re-run to resume"):
        pool.map(_die_on_two, range(6))
    assert time.monotonic() - started < 60  # reported, not hung


def test_shared_values_reach_every_worker_which_runs_torch_on_one_thread(new_pool):
    with new_pool(2) as pool:
        shared = pool.share({"weights": torch.arange(4.0)})
        results = pool.map(functools.partial(_threads_and_sum, shared), range(4))
    assert [total for _, total in results] == [6.0, 7.0, 8.0, 9.0]
    if pool.workers > 1:
        assert {threads for threads, _ in results} == {1}


def test_on_result_runs_in_the_driver_and_its_value_takes_the_results_place(new_pool):
    seen = []
    with new_pool(2) as pool:
        results = pool.map(_square, range(5), on_result=lambda r: seen.append((os.getpid(), r)) or -r)
    assert results == [0, -1, -4, -9, -16]
    assert sorted(r for _, r in seen) == [0, 1, 4, 9, 16] and {pid for pid, _ in seen} == {os.getpid()}


def _slow_square(x):
    time.sleep(0.3)
    return x * x


def test_a_stop_request_keeps_the_results_in_progress_and_starts_no_more(new_pool):
    kept = []

    def keep(result):
        kept.append(result)
        interrupt._requested = signal.SIGINT  # as the first Ctrl-C does
    try:
        with new_pool(2) as pool, pytest.raises(Interrupted, match=r"of 12 runs of _slow_square had finished") as stopped:
            pool.map(_slow_square, range(12), on_result=keep)
    finally:
        interrupt._requested = 0
    finished = int(str(stopped.value).split()[0])
    assert len(kept) == finished and 1 <= finished < 12  # every finished task's result reached the driver


def test_a_stop_request_while_the_last_tasks_run_completes_the_map(new_pool):
    """Every task had started when the stop came: they finish, and the map is whole (an
    evaluation whose episodes had all finished used to be thrown away)."""
    with new_pool(2) as pool:
        pool.map(_square, range(2))  # workers up and warm: both tasks below start at once
        timer = threading.Timer(0.1, lambda: setattr(interrupt, "_requested", signal.SIGINT))
        timer.start()
        try:
            assert pool.map(_slow_square, [2, 3]) == [4, 9]
        finally:
            timer.join()
            interrupt._requested = 0


def test_episodes_spread_over_workers_equal_one_batch(new_pool):
    torch.manual_seed(0)
    vae, mdrnn = ConvVAE(32).eval(), MDNRNN(32, 3, 256, 5).eval()
    params = np.random.default_rng(1).normal(0, 0.1, (4, parameter_count(288))).astype(np.float32)
    seeds = [21, 22, 23, 24]
    batched = run_agent_episodes(vae, mdrnn, params, seeds, max_steps=25, fast_render=True)
    with new_pool(2) as pool:
        spread = run_agent_parallel(pool, share_agent_models(pool, vae, mdrnn), params, seeds, max_steps=25, fast_render=True,
                                    max_envs_per_job=1)
    np.testing.assert_allclose(spread.returns, batched.returns, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(spread.steps, batched.steps)


# What only the Ray backend survives. The markers are files: the test, the driver and the
# workers share this machine's disk, which the code under test never assumes.

def _die_the_first_time(marker_dir: str, x: int) -> int:
    marker = Path(marker_dir) / f"{x}.ran"
    if x == 1 and not marker.exists():
        marker.touch()
        time.sleep(0.3)  # mid-task
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def test_a_ray_worker_killed_mid_task_is_replaced_and_the_map_completes(ray_instance, tmp_path):
    from worldmodels.parallel.ray_backend import RayPool

    with RayPool(workers=2) as pool:
        assert pool.map(functools.partial(_die_the_first_time, str(tmp_path)), range(4)) == [0, 1, 4, 9]
    assert (tmp_path / "1.ran").exists()  # it did die once


def _hang_the_first_time(marker_dir: str, x: int) -> int:
    marker = Path(marker_dir) / f"{x}.ran"
    if x == 0 and not marker.exists():
        marker.touch()
        time.sleep(300)
    return x + 10


def test_a_hung_ray_task_is_stopped_and_run_again(ray_instance, tmp_path, capsys):
    from worldmodels.parallel.ray_backend import RayPool

    with RayPool(workers=2, task_timeout=5) as pool:
        pool.map(_square, range(2))  # workers that have started and imported this module: a task's 5 s are its own
        started = time.monotonic()
        assert pool.map(functools.partial(_hang_the_first_time, str(tmp_path)), range(3)) == [10, 11, 12]
    assert time.monotonic() - started < 60
    assert capsys.readouterr().out.count("ran past 5 s: running it again") == 1


def _die_then_take_a_while(marker_dir: str, x: int) -> int:
    """Every run takes 3 s; item 0's first run dies after 8 s."""
    runs = len(list(Path(marker_dir).glob(f"{x}.*.ran")))
    (Path(marker_dir) / f"{x}.{runs}.ran").touch()
    time.sleep(3)
    if x == 0 and runs == 0:
        time.sleep(5)
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 10


def test_a_ray_task_run_again_after_its_worker_died_starts_its_own_clock(ray_instance, tmp_path, capsys):
    """A retry's clock used to start with the first run: 8 s lost to the dead worker plus the
    retry's 3 s ran past the 10 s timeout, and the healthy retry was stopped and run a third
    time. (A retry's own clock counts the start of a new worker process: up to 7 s here.)"""
    from worldmodels.parallel.ray_backend import RayPool

    with RayPool(workers=2, task_timeout=10) as pool:
        pool.map(_square, range(2))  # workers that have started and imported this module
        assert pool.map(functools.partial(_die_then_take_a_while, str(tmp_path)), range(2)) == [10, 11]
    out = capsys.readouterr().out
    assert "ran past" not in out and "_die_then_take_a_while on item 0: its Ray worker died; running it again" in out
    assert sorted(p.name for p in tmp_path.glob("*.ran")) == ["0.0.ran", "0.1.ran", "1.0.ran"]


def _hang(x):
    time.sleep(300)


def test_a_ray_task_that_hangs_every_time_is_reported(ray_instance):
    from worldmodels.parallel.ray_backend import RayPool

    with RayPool(workers=1, task_timeout=1, retries=1) as pool, pytest.raises(WorkerDied, match="_hang on item 0 ran past 1 s 2 times"):
        pool.map(_hang, [0])


def test_ray_workers_read_no_paths(ray_instance, tmp_path):
    """V and M reach the workers through the object store: the checkpoint files can go once
    the driver has loaded them."""
    from worldmodels.parallel.ray_backend import RayPool

    save_untrained_models(tmp_path)
    vae, mdrnn = load_vae_and_mdrnn(tmp_path / "vae.pt", tmp_path / "mdrnn.pt")
    for path in tmp_path.glob("*.pt"):
        path.unlink()
    params = np.random.default_rng(2).normal(0, 0.1, (4, parameter_count(64))).astype(np.float32)
    results = {}
    for name, pool in (("local", LocalPool(2)), ("ray", RayPool(workers=2))):
        with pool:
            results[name] = run_agent_parallel(pool, share_agent_models(pool, vae, mdrnn), params, [5, 6, 7, 8], max_steps=20,
                                               fast_render=True)
    np.testing.assert_array_equal(results["ray"].returns, results["local"].returns)
    np.testing.assert_array_equal(results["ray"].steps, results["local"].steps)


def test_stage_01_on_ray_writes_the_same_episodes_as_locally(ray_instance, tmp_path, scripts):
    save_untrained_agent(tmp_path / "agent")
    for backend, flags in (("local", []), ("ray", ["--ray"])):
        for policy in ([], ["--policy", str(tmp_path / "agent"), "--first-seed", "100"]):
            scripts[0].main(["--episodes", "2", "--max-steps", "30", "--workers", "2", "--out-dir", str(tmp_path / backend),
                             *policy, *flags])
    local, ray = list_episodes(tmp_path / "local"), list_episodes(tmp_path / "ray")
    assert [p.name for p in ray] == [p.name for p in local] == ["ep00000000.npz", "ep00000001.npz", "ep00000100.npz", "ep00000101.npz"]
    for a, b in zip(local, ray):
        for key, array in read_rollout(a).items():
            np.testing.assert_array_equal(read_rollout(b)[key], array)


def test_stage_05_on_ray_finds_the_same_controller_as_locally(ray_instance, tmp_path, scripts):
    save_untrained_models(tmp_path / "local")
    shutil.copytree(tmp_path / "local", tmp_path / "ray")  # the same V and M
    for backend, flags in (("local", []), ("ray", ["--ray"])):
        scripts[4].main(["--generations", "3", "--population", "4", "--episodes-per-candidate", "2", "--max-steps", "20",
                         "--check-every", "2", "--check-episodes", "2", "--workers", "2", "--checkpoint-dir", str(tmp_path / backend),
                         *flags])
    scores = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
    assert scores(log_rows(tmp_path / "ray" / "controller_log.csv")) == scores(log_rows(tmp_path / "local" / "controller_log.csv"))
    kept = [load_checkpoint(tmp_path / b / "controller.pt", "controller", "05")["params"] for b in ("local", "ray")]
    assert torch.equal(*kept)


def test_a_ray_instance_the_pool_starts_binds_to_loopback_only(tmp_path):
    """Without the variable set: the pool sets it before it starts an instance of its own."""
    pytest.importorskip("ray", reason="ray is not installed (pip install -e \".[ray]\")")
    from worldmodels.parallel.ray_backend import LOOPBACK

    code = ("import ray; from worldmodels.parallel import make_pool\n"
            "with make_pool(1, 'local') as pool:\n"
            "    print(sorted({n['NodeManagerAddress'] for n in ray.nodes()}), pool.map(abs, [-3]))")
    env = {k: v for k, v in os.environ.items() if k not in LOOPBACK and k != "RAY_ADDRESS"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['127.0.0.1'] [3]"


def test_ctrl_c_on_ray_writes_the_episodes_in_progress_and_stops(tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install -e \".[ray]\")")
    from helpers import signal_when, start_stage

    from worldmodels.cli import INTERRUPTED_EXIT
    from worldmodels.parallel.ray_backend import LOOPBACK

    out = tmp_path / "rollout"
    args = ["01_generate_data.py", "--episodes", "12", "--max-steps", "150", "--out-dir", str(out), "--workers", "2", "--ray", "local"]
    process = start_stage(args, tmp_path, **LOOPBACK)
    output = signal_when(process, lambda: len(list_episodes(out)) >= 2, signal.SIGINT)
    assert process.returncode == INTERRUPTED_EXIT, output
    kept = len(list_episodes(out))
    assert f"stopped: {kept} of 12 episodes are in {out}; re-run to collect the rest" in output
    assert kept < 12 and "Traceback" not in output and not list(out.glob(".*.tmp"))


def test_ray_is_imported_only_when_asked(tmp_path):
    code = ("import sys; from worldmodels.cli import load_stage_script; from worldmodels.parallel import make_pool\n"
            "load_stage_script('05_train_controller.py')\n"
            "with make_pool(2) as pool: pool.map(abs, [-1])\n"
            "print('ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False"


def test_ray_asked_for_but_not_installed_is_one_line_naming_the_install(monkeypatch):
    from worldmodels.errors import DataError
    from worldmodels.parallel import make_pool

    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without ray gives an import
    monkeypatch.setitem(sys.modules, "worldmodels.parallel.ray_backend", None)
    with pytest.raises(DataError, match=r'^--ray needs the ray package \(.*\); install it with: pip install -e "\.\[ray\]"$'):
        make_pool(2, "auto")
