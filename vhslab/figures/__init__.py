"""Figures: plotting only, a leaf room (it imports nothing of vhslab); each function takes result
datasets, arrays or the plain numbers of a report and returns a matplotlib figure in the one style of
`vhslab.figures.style` (`save_figure` writes PNG and PDF)."""

from vhslab.figures.attribution import plot_attribution
from vhslab.figures.geometry import plot_geometry
from vhslab.figures.grids import image_grid
from vhslab.figures.interventions import plot_patching
from vhslab.figures.probes import plot_probe_sweep
from vhslab.figures.pruning import plot_pruning
from vhslab.figures.search import plot_budget_curve, plot_latency_breakdown
from vhslab.figures.steps import plot_auroc_vs_sigma, plot_step_maps
from vhslab.figures.style import apply_theme, caption, colour_for, save_figure
from vhslab.figures.timing import plot_timing
from vhslab.figures.verifiers import plot_side_by_side, plot_tag_confusion, plot_verifier_depth

__all__ = ["apply_theme", "caption", "colour_for", "image_grid", "plot_attribution", "plot_auroc_vs_sigma",
           "plot_budget_curve", "plot_geometry", "plot_latency_breakdown", "plot_patching", "plot_probe_sweep",
           "plot_pruning", "plot_side_by_side", "plot_step_maps", "plot_tag_confusion", "plot_timing",
           "plot_verifier_depth", "save_figure"]
