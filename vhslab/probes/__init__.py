"""Layer-wise probe sweeps over activation stores (linear / MLP probes, prompt-only baseline).

    from vhslab.probes import open_store, run_sweep
    res = run_sweep(open_store("ds.zarr"), targets=["verdict", "found_color", "recon"], probes=["linear", "mlp"])
    res.summary()   # per target: the site chosen by inner CV, its selection-free score, its gap to the baseline
    res.choose_layer("auroc", "verdict"); res.plot(); res.save("probes.nc")
"""

from vhslab.probes.data import ProbeError, check_store, open_store, site_features
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
from vhslab.probes.models import PROBES, make_probe, make_prompt_baseline, prompt_structure
from vhslab.probes.results import ProbeResults
from vhslab.probes.splits import meaning_folds
from vhslab.probes.sweep import run_sweep
from vhslab.probes.targets import KNOWN as KNOWN_TARGETS
from vhslab.probes.targets import Target, build_targets

__all__ = [
    "KNOWN_TARGETS",
    "METRICS",
    "PROBES",
    "ProbeError",
    "ProbeResults",
    "Target",
    "auroc",
    "auroc_within",
    "balanced_accuracy",
    "bootstrap_ci",
    "build_targets",
    "check_store",
    "ece",
    "make_probe",
    "make_prompt_baseline",
    "meaning_folds",
    "open_store",
    "paired_bootstrap_ci",
    "prompt_structure",
    "r2",
    "run_sweep",
    "site_features",
]
