"""Layer-wise probe sweeps over activation stores (linear / MLP probes, prompt-only baseline).

    from vhslab.probes import open_store, run_sweep
    res = run_sweep(open_store("ds.zarr"), targets=["verdict", "found_color", "recon"], probes=["linear", "mlp"])
    res.summary()   # per target: the site chosen by inner CV, its selection-free score, its gap to the baseline
    res.choose_layer("auroc", "verdict"); res.plot(); res.save("probes.nc")

Reading one site of a store (`site_features`, `site_array`, ...) lives in `vhslab.probes.data`; sites in `vhslab.trace`.
"""

from vhslab.probes.data import ProbeError, StoreDamaged, open_store
from vhslab.probes.grid import GridResult, probe_grid
from vhslab.probes.metrics import (
    METRICS,
    auroc,
    auroc_within,
    balanced_accuracy,
    bootstrap_ci,
    ece,
    paired_bootstrap_ci,
    r2,
)
from vhslab.probes.models import PROBES, WithinPromptLinear, make_probe, make_prompt_baseline, prompt_structure
from vhslab.probes.results import ProbeResults
from vhslab.probes.splits import check_disjoint, fold_of, meaning_folds
from vhslab.probes.sweep import run_sweep
from vhslab.probes.targets import KNOWN as KNOWN_TARGETS
from vhslab.probes.targets import Target, build_targets

__all__ = [
    "KNOWN_TARGETS",
    "METRICS",
    "PROBES",
    "GridResult",
    "ProbeError",
    "ProbeResults",
    "StoreDamaged",
    "Target",
    "WithinPromptLinear",
    "auroc",
    "auroc_within",
    "balanced_accuracy",
    "bootstrap_ci",
    "build_targets",
    "check_disjoint",
    "ece",
    "fold_of",
    "make_probe",
    "make_prompt_baseline",
    "meaning_folds",
    "open_store",
    "paired_bootstrap_ci",
    "probe_grid",
    "prompt_structure",
    "r2",
    "run_sweep",
]
