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


@pytest.fixture(scope="module")
def world():
    """The shipped world, loaded once per test module: a module may leave it changed (a verifier built
    on its LLM puts the LLM back in training mode), so modules do not share one."""
    import vhslab

    return vhslab.load_world()
