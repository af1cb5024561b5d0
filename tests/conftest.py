import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass



@pytest.fixture
def geneval_file() -> Path:
    """The real GenEval metadata file, shipped in the package with its licence."""
    from vhslab.shapes.prompts import GENEVAL_FILE

    return GENEVAL_FILE


@pytest.fixture(scope="module")
def world():
    """The shipped world, loaded once per test module: a module may leave it changed (a verifier built
    on its LLM puts the LLM back in training mode), so modules do not share one."""
    import vhslab

    return vhslab.load_world()
