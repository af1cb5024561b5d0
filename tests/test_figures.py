"""Every figure function: writes PNG and PDF, labels its axes, keeps one colour per name across figures.
Inputs are small synthetic results shaped as the library's (no model runs); fast."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from vhslab import figures
from vhslab.figures.style import NAMED, READABLE, caption, colour_for, save_figure, significance

RNG = np.random.default_rng(0)
SITES = [f"block.{k}" for k in range(4)] + ["ae_latent", "vision", "text"]


def sweep_ds():
    v = RNG.uniform(0.5, 0.8, (2, len(SITES), 3))
    depth = [(k + 1) / 4 for k in range(4)] + [np.nan] * 3
    return xr.Dataset({"value": (("model", "site", "metric"), v), "lo": (("model", "site", "metric"), v - 0.05),
                       "hi": (("model", "site", "metric"), v + 0.05)},
                      coords={"model": ["verifier", "probe"], "site": SITES, "depth": ("site", depth),
                              "metric": ["auroc", "within_prompt_auroc", "gain"]}, attrs={"n_prompt_rows": 40})


def probe_ds():
    sites = SITES[:5]
    shape = (len(sites), 2, 2, 2)
    v = RNG.uniform(0.5, 0.9, shape)
    dims = ("site", "probe", "target", "metric")
    return xr.Dataset({"pooled": (dims, v), "ci_low": (dims, v - 0.04), "ci_high": (dims, v + 0.04),
                       "baseline_pooled": (dims[1:], np.full(shape[1:], 0.6))},
                      coords={"site": sites, "probe": ["linear", "mlp"], "target": ["verdict", "found_color.0"],
                              "metric": ["auroc", "auroc_within"], "layer": ("site", [0, 1, 2, 3, -1]),
                              "depth": ("site", [0.25, 0.5, 0.75, 1.0, 1.0])}, attrs={"n_samples": 100})


def budget_table():
    paths, budgets = ["vhs", "vision", "oracle", "none"], [1.0, 2.0, 4.0]
    v = RNG.uniform(0.5, 0.8, (2, 3, 4))
    dims = ("cost_model", "budget", "verifier")
    return xr.Dataset({"value": (dims, v), "lo": (dims, v - 0.03), "hi": (dims, v + 0.03),
                       "budget_ms": (dims[:2], np.outer([1, 10], budgets))},
                      coords={"cost_model": ["world", "sana-sprint-1.6b"], "budget": budgets, "verifier": paths})


def patch_ds():
    blocks, regions = list(range(12)), ["all", "q00", "q01", "q10", "q11"]
    flip = RNG.uniform(0, 0.4, (12, 5))
    return xr.Dataset({"flip": (("block", "region"), flip), "flip_control": (("block", "region"), flip / 2),
                       "steer_success": (("block", "image"), RNG.integers(0, 2, (12, 8))),
                       "steer_control": (("block", "image"), RNG.integers(0, 2, (12, 8))),
                       "steer_diff_lo": ("block", np.full(12, -0.1)), "steer_diff_hi": ("block", np.full(12, 0.3))},
                      coords={"block": blocks, "region": regions}, attrs={"n_pairs": 8, "coefficient": 1.0})


def attribution_ds(n=5):
    words = np.array(["<bos>", "a", "red", "cube", "<pad>"])
    return xr.Dataset({"visual_ig": (("sample", "r", "c"), RNG.normal(size=(n, 4, 4))),
                       "visual_ablation": (("sample", "r", "c"), RNG.normal(size=(n, 4, 4))),
                       "control_token_norm": (("sample", "r", "c"), RNG.uniform(size=(n, 4, 4))),
                       "image": (("sample", "h", "w", "rgb"), RNG.uniform(size=(n, 16, 16, 3))),
                       "margin": ("sample", RNG.normal(size=n)), "verdict": ("sample", [1, 0, 1, 0, 1][:n]),
                       "tag": ("sample", ["colors", "colors", "counting", "counting", "position"][:n]),
                       "prompt": ("sample", ["a red cube"] * n), "token": ("tok", words),
                       "is_prompt_token": (("sample", "tok"), np.tile([False, True, True, True, False], (n, 1))),
                       "prompt_ig": (("sample", "tok"), RNG.normal(size=(n, 5)))})


def geometry_ds(n=30):
    sites = ["block.0", "block.1", "block.2", "ae_latent"]
    cka = RNG.uniform(0.3, 1, (4, 4))
    return xr.Dataset({"cka": (("site", "site_b"), cka), "cka_lower": (("site", "site_b"), cka - 0.05),
                       "cka_upper": (("site", "site_b"), cka + 0.05), "cka_random_dit": (("site", "site_b"), cka / 2),
                       "cka_random_dit_lower": (("site", "site_b"), cka / 2 - 0.05),
                       "cka_random_dit_upper": (("site", "site_b"), cka / 2 + 0.05),
                       "pca": (("site", "sample", "component"), RNG.normal(size=(4, n, 2))),
                       "label_verdict": ("sample", RNG.integers(0, 2, n))},
                      coords={"site": sites, "site_b": sites, "component": [1, 2], "site_block": ("site", [0, 1, 2, -1])})


def confusion():
    return xr.DataArray(RNG.integers(1, 30, (3, 2, 2)), dims=("tag", "evaluator", "verifier"),
                        coords={"tag": ["colors", "counting", "position"], "evaluator": [0, 1], "verifier": [0, 1]})


def side_by_side():
    cell = lambda v: {"value": v, "ci": [v - 0.05, v + 0.05]}  # noqa: E731
    return {"verifier": {"auroc": cell(0.8), "gain": cell(0.09)},
            "probe": {"auroc": cell(0.81), "gain": cell(0.07), "minus_first": {"auroc": cell(0.0)}},
            "teacher": {"auroc": cell(0.7), "gain": cell(0.08), "minus_first": {"auroc": cell(-0.1)}}}


LATENCY = {"world (CPU)": {"vhs": {"dit": 10.0, "llm_prefill": 2.0}, "vision": {"dit": 12.0, "decode": 5.0, "vision_encode": 1.0,
                                                                                 "llm_prefill": 2.0}},
           "sana-sprint-1.6b (H200)": {"vhs": {"dit": 10.0, "llm_prefill": 3.0}, "vision": {"dit": 14.0, "decode": 50.0}}}

def grid_ds():
    targets, steps, layers = ["verdict", "colour", "recon"], [0, 2, 4, 7], [0, 3, 6]
    dims, shape = ("target", "step", "layer"), (3, 4, 3)
    gap = RNG.uniform(-0.1, 0.3, shape)
    return xr.Dataset({"value": (dims, gap + 0.5), "gap": (dims, gap), "gap_ci_low": (dims, gap - 0.05),
                       "gap_ci_high": (dims, gap + 0.05), "decodable": (dims, gap > 0.2),
                       "baseline": ("target", [0.5, 0.6, 0.1]), "baseline_ci_low": ("target", [0.45, 0.55, 0.05]),
                       "baseline_ci_high": ("target", [0.55, 0.65, 0.15]), "n_test": ("target", [96, 96, 96])},
                      coords={"target": targets, "metric": ("target", ["auroc_within", "auroc", "r2"]), "step": steps,
                              "sigma": ("step", [1.0, 0.75, 0.5, 0.125]), "layer": layers})


def sigma_curves():
    sigma = [1.0, 0.75, 0.5, 0.125]
    return {name: {"sigma": sigma, "value": list(v), "ci": [[x - 0.05, x + 0.05] for x in v]}
            for name, v in (("probe", [0.5, 0.55, 0.7, 0.8]), ("verifier", [0.5, 0.6, 0.75, 0.85]))}


def prune_ds():
    budgets, searches = [2.0, 4.0, 8.0], ["prune", "bon", "student"]
    v = RNG.uniform(0.4, 0.8, (3, 3))
    diff = np.array([[0.2, 0.1], [-0.05, 0.0], [0.01, 0.02]])
    return xr.Dataset({"value": (("budget", "search"), v), "lo": (("budget", "search"), v - 0.05),
                       "hi": (("budget", "search"), v + 0.05), "diff": (("budget", "comparison"), diff),
                       "diff_lo": (("budget", "comparison"), diff - 0.1), "diff_hi": (("budget", "comparison"), diff + 0.1)},
                      coords={"budget": budgets, "search": searches, "comparison": ["prune-bon", "prune-student"]},
                      attrs={"scorer": "vision", "step": "4", "k": "2", "n_prompt_rows": "30", "n_meanings": "10",
                             "prompts": "geneval-shapes"})


def timing_ds():
    steps, sites = [0, 2, 4], ["block.0", "block.6", "x_t"]
    v = RNG.uniform(-0.1, 0.6, (3, 3))
    ci = np.stack([v - 0.1, v + 0.1], -1)
    return xr.Dataset({"flip_minus_control": (("step", "site"), v),
                       "flip_minus_control_ci": (("step", "site", "bound"), ci), "significant": (("step", "site"), ci[..., 0] > 0)},
                      coords={"step": steps, "sigma": ("step", [1.0, 0.71, 0.43]), "site": sites, "bound": ["low", "high"]},
                      attrs={"n_pairs": 12})


CASES = {
    "verifier_depth": lambda: figures.plot_verifier_depth(sweep_ds()),
    "probe_sweep": lambda: figures.plot_probe_sweep(probe_ds()),
    "budget_curve": lambda: figures.plot_budget_curve(budget_table()),
    "latency": lambda: figures.plot_latency_breakdown(LATENCY),
    "patching": lambda: figures.plot_patching(patch_ds()),
    "attribution": lambda: figures.plot_attribution(attribution_ds(), k=4),
    "geometry": lambda: figures.plot_geometry(geometry_ds()),
    "confusion": lambda: figures.plot_tag_confusion(confusion(), suite="geneval-shapes"),
    "side_by_side": lambda: figures.plot_side_by_side(side_by_side(), metrics=("auroc", "gain")),
    "step_maps": lambda: figures.plot_step_maps(grid_ds()),
    "auroc_vs_sigma": lambda: figures.plot_auroc_vs_sigma(sigma_curves(), n=96),
    "pruning": lambda: figures.plot_pruning(prune_ds()),
    "timing": lambda: figures.plot_timing(timing_ds()),
    "grid": lambda: figures.image_grid({"colors": [RNG.uniform(size=(8, 8, 3))] * 3}, marks={"colors": [True, False, True]}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_figure_writes_png_and_pdf_with_labelled_axes(name, tmp_path):
    fig = CASES[name]()
    written = save_figure(fig, tmp_path / f"{name}.png")
    assert [p.suffix for p in written] == [".png", ".pdf"]
    assert all(p.stat().st_size > 1000 for p in written)
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    assert fig._suptitle is not None and fig._suptitle.get_text(), "every figure has a caption-ready title"
    plotted = [ax for ax in fig.axes if ax.get_visible() and ax.has_data() and ax.get_label() != "<colorbar>"]
    assert plotted
    if name != "grid":  # images: the axes are the pictures; the rows are named instead
        for ax in plotted:
            assert ax.get_ylabel() or ax.get_xlabel() == "", f"{name}: a panel without a y label"
            assert ax.get_xlabel() or not ax.get_xticklabels(), f"{name}: a panel without an x label"
    plt.close(fig)


def test_one_legend_per_figure():
    for name in ("verifier_depth", "budget_curve", "probe_sweep", "latency", "step_maps", "auroc_vs_sigma", "pruning"):
        fig = CASES[name]()
        assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes), name
        plt.close(fig)


def lines_by_label(fig) -> dict[str, tuple]:
    found = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            found[label] = matplotlib.colors.to_rgb(handle.get_color() if hasattr(handle, "get_color")
                                                   else handle.lines[0].get_color() if hasattr(handle, "lines")
                                                   else handle.get_facecolor())
    for legend in fig.legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
            colour = (handle.get_color() if hasattr(handle, "get_color") else handle.get_facecolor())
            found[text.get_text()] = matplotlib.colors.to_rgb(colour)
    return found


def test_the_same_name_has_the_same_colour_in_every_figure():
    depth, curve = lines_by_label(CASES["verifier_depth"]()), lines_by_label(CASES["budget_curve"]())
    side = lines_by_label(CASES["side_by_side"]())
    assert depth["verifier"] == side["verifier"] == matplotlib.colors.to_rgb(colour_for("verifier"))
    assert depth["probe"] == side["probe"] == matplotlib.colors.to_rgb(colour_for("probe"))
    assert curve["vision"] == matplotlib.colors.to_rgb(colour_for("vision"))
    assert curve["vhs"] == depth["verifier"], "the vhs path is the verifier's colour"
    plt.close("all")


def test_colour_for_is_stable_and_in_the_palette():
    assert colour_for("verifier") == NAMED["verifier"]
    assert colour_for("some new path") == colour_for("some new path") and colour_for("some new path") in READABLE
    assert colour_for("vhs") != colour_for("vision") != colour_for("oracle")


def test_captions_and_significance():
    assert caption("x", "geneval-shapes", 553) == "x\n(suite: geneval-shapes, n = 553 prompts)"
    assert caption("x") == "x"
    assert significance(0.01, 0.2) == "*" and significance(-0.1, 0.2) == "" and significance(float("nan"), 1) == ""


def test_attribution_spreads_examples_over_tags_and_verdicts():
    picked = figures.attribution.spread_samples(attribution_ds(), 3)
    ds = attribution_ds()
    assert len({(str(ds.tag.values[i]), int(ds.verdict.values[i])) for i in picked}) == 3


def test_step_figures_use_the_fixed_colours_and_state_suite_and_n():
    sigma, prune = lines_by_label(CASES["auroc_vs_sigma"]()), lines_by_label(CASES["pruning"]())
    depth = lines_by_label(CASES["verifier_depth"]())
    assert sigma["probe"] == depth["probe"] == matplotlib.colors.to_rgb(colour_for("probe"))
    assert sigma["verifier"] == depth["verifier"]
    assert prune["one-step student + VHS"] == matplotlib.colors.to_rgb(colour_for("student + VHS"))
    assert len({prune[k] for k in prune}) == 3, "the three searches have three colours"
    titles = {name: CASES[name]()._suptitle.get_text() for name in ("step_maps", "auroc_vs_sigma", "pruning", "timing")}
    assert "n = 96 test samples" in titles["step_maps"] and "n = 96 test samples" in titles["auroc_vs_sigma"]
    assert "suite: geneval-shapes, n = 30 prompts, 10 meanings" in titles["pruning"]
    assert "n = 12 colour pairs" in titles["timing"]
    plt.close("all")


def test_maps_carry_a_colour_bar_per_panel():
    for name, panels in (("step_maps", 3), ("timing", 1)):
        fig = CASES[name]()
        assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == panels, name
        plt.close(fig)
