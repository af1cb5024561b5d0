"""Analysis of what the generator's hidden states hold and what the verifier reads: attribution with
its sanity checks, patching and steering, and the geometry of the sites.

    study = attribution_study(verifier, open_store("test.zarr"), n=64)     # maps + checks
    ds = patch_sweep(world, verifier, pairs_from_store(store, 8))          # activation patching
    ds = steer_sweep(world, store, prompts, blocks=[4, 8])                 # steering along colour probes
    ds = geometry(store, n=1000)                                           # CKA across sites, PCA / UMAP
    res = patch_timing(world.teacher, colour_pairs(specs, 24), [0, 4], [2, 8])  # causal timing across steps
"""

from vhslab.analysis.attribution import AttributionError, attribute, margin, patch_ablation, prompt_ig, visual_ig
from vhslab.analysis.checks import check_table, deletion, perturbation, run_checks
from vhslab.analysis.geometry import GeometryError, GeometryResult, cka_matrix, geometry, geometry_study, linear_cka
from vhslab.analysis.interventions import (
    REGIONS,
    PatchResult,
    colour_directions,
    pairs_from_store,
    patch_effect,
    patch_study,
    patch_sweep,
    steer_sweep,
)
from vhslab.analysis.road import road_impute
from vhslab.analysis.sanity import pointing, randomised_copy, rank_correlation
from vhslab.analysis.study import AttributionResult, attribution_study
from vhslab.analysis.timing import (
    TimingError,
    TimingPair,
    TimingResult,
    capture_states,
    colour_pairs,
    correctness_pairs,
    patch_timing,
    teacher_images,
    timing_sites,
    timing_summary,
)

__all__ = ["REGIONS", "AttributionError", "AttributionResult", "GeometryError", "GeometryResult", "PatchResult",
           "TimingError", "TimingPair", "TimingResult", "attribute", "attribution_study", "capture_states",
           "check_table", "cka_matrix", "colour_directions", "colour_pairs", "correctness_pairs", "deletion", "geometry", "geometry_study",
           "linear_cka", "margin", "pairs_from_store", "patch_ablation", "patch_effect", "patch_study", "patch_sweep",
           "patch_timing", "perturbation", "pointing", "prompt_ig", "randomised_copy", "rank_correlation", "road_impute",
           "run_checks", "steer_sweep", "teacher_images", "timing_sites", "timing_summary", "visual_ig"]
