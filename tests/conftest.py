import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def geneval_file() -> Path:
    path = SHARED_DATA / "geneval_evaluation_metadata.jsonl"
    if not path.exists():
        pytest.skip("../shared/data is not beside this checkout")
    return path


@pytest.fixture(scope="session")
def world():
    """The shipped world, loaded once for every test that needs it (tests restore what they change)."""
    import vhslab

    return vhslab.load_world()
