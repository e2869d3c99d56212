import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    # Box2D's SWIG bindings warn about their own types on import; nothing to act on here.
    config.addinivalue_line("filterwarnings", "ignore:builtin type (SwigPy|swigvarlink):DeprecationWarning")


@pytest.fixture(autouse=True)
def release_folder_locks():
    """Stages run in this process take their output folders' locks; each test gives them back."""
    yield
    from worldmodels.locks import release_all

    release_all()


@pytest.fixture
def scripts():
    from worldmodels.cli import load_stage_script  # imported after pytest_configure has filtered Box2D's warnings

    names = ["01_generate_data.py", "02_train_vae.py", "03_generate_rnn_data.py", "04_train_rnn.py", "05_train_controller.py"]
    return [load_stage_script(n) for n in names]


RAY_MISSING = "ray is not installed (pip install -e \".[ray]\"); CI installs it, so the Ray backend is tested there"


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray instance for the whole test run: 2 CPUs, bound to 127.0.0.1 only, test
    modules importable by its workers; it stops when the tests end."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when ray is imported: 127.0.0.1 only
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}})
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    yield ray
    ray.shutdown()


@pytest.fixture(params=["local", "ray"])
def backend(request) -> str:
    """Each test that takes it runs over every backend of the parallel map."""
    if request.param == "ray":
        request.getfixturevalue("ray_instance")
    return request.param


@pytest.fixture
def new_pool(backend):
    """new_pool(workers, **options): a pool of the backend under test (options, for the
    backends that retry: task_timeout, retries)."""
    from worldmodels.parallel import LocalPool

    def new(workers: int, **options):
        if backend == "local":
            return LocalPool(workers)
        from worldmodels.parallel.ray_backend import RayPool

        return RayPool(workers=workers, **options)
    return new
