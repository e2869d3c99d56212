import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    # Box2D's SWIG bindings warn about their own types on import; nothing to act on here.
    config.addinivalue_line("filterwarnings", "ignore:builtin type (SwigPy|swigvarlink):DeprecationWarning")


def load_script(name: str):
    """Import a numbered stage script (its file name is not a valid module name)."""
    spec = importlib.util.spec_from_file_location(name.replace(".py", "").lstrip("0123456789_"), ROOT / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def scripts():
    names = ["01_generate_data.py", "02_train_vae.py", "03_generate_rnn_data.py", "04_train_rnn.py", "05_train_controller.py"]
    return [load_script(n) for n in names]
