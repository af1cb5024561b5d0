import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass



# The heaviest test files, longest first (seconds on one core, from `pytest --durations=40` on 2 cores,
# 2026-12-07: fault injection ~300, world training ~260, docs ~190, extraction ~150, ...). With
# `--dist loadfile --no-loadscope-reorder` (pyproject) a file runs whole on one worker and files are handed
# out in collection order; sorted by name, the world's long files came last and the two workers finished
# minutes apart. Longest first evens them out; the order within a file is kept.
HEAVY_FIRST = ("test_fault_injection.py", "test_world_train.py", "test_docs.py", "test_extract.py",
               "test_verifier_train.py", "test_world_teacher.py", "test_notebook.py", "test_world_shipped.py",
               "test_steps_trace.py", "test_probes_errors.py", "test_faults.py", "test_probes_sweep.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: other files keep their order


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
