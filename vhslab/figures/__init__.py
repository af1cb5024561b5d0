"""Figures: plotting only, a leaf room (it imports nothing of vhslab); each function takes result
datasets or arrays with their labels and returns a matplotlib figure."""

from vhslab.figures.attribution import plot_attribution
from vhslab.figures.geometry import plot_geometry
from vhslab.figures.grids import image_grid
from vhslab.figures.interventions import plot_patching
from vhslab.figures.probes import plot_probe_sweep
from vhslab.figures.pruning import plot_pruning
from vhslab.figures.search import plot_budget_curve
from vhslab.figures.steps import plot_auroc_vs_sigma, plot_step_maps
from vhslab.figures.timing import plot_timing
from vhslab.figures.verifiers import plot_verifier_depth

__all__ = ["image_grid", "plot_attribution", "plot_auroc_vs_sigma", "plot_budget_curve", "plot_geometry",
           "plot_patching", "plot_probe_sweep", "plot_pruning", "plot_step_maps", "plot_timing", "plot_verifier_depth"]
