import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    # Box2D's SWIG bindings warn about their own types on import; nothing to act on here.
    config.addinivalue_line("filterwarnings", "ignore:builtin type (SwigPy|swigvarlink):DeprecationWarning")


@pytest.fixture
def scripts():
    from worldmodels.cli import load_stage_script  # imported after pytest_configure has filtered Box2D's warnings

    names = ["01_generate_data.py", "02_train_vae.py", "03_generate_rnn_data.py", "04_train_rnn.py", "05_train_controller.py"]
    return [load_stage_script(n) for n in names]
