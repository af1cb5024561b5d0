"""Write `paper_figs.ipynb` (the repository root) from the cells below, with nbformat, so the notebook is
reproducible and reviewed as code. Run: `python benchmarks/build_paper_figs.py` (writes the notebook without
outputs); then execute it (quick: `VHSLAB_FIGS_MODE=quick`, full: the default) with

    VHSLAB_FIGS_OUT=out/paper_figs python -m jupyter nbconvert --to notebook --execute --inplace paper_figs.ipynb

or with `python benchmarks/build_paper_figs.py --execute [--mode quick|full]` (nbclient, in place)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "paper_figs.ipynb"

INTRO = """# vhslab: every figure of the study, regenerated from the embedded world

Each section makes one figure with a `vhslab.figures` function (one style: `vhslab.figures.style`), saves it
as PNG and PDF and says what it shows, which command or function made its numbers, and the number it supports.

- **Mode** (`VHSLAB_FIGS_MODE`): `quick` (a few hundred candidates extracted from the shipped world, few
  bootstrap draws, the committed `docs/*.json` / `docs/*.nc` results for the studies that take many
  minutes; about 2 minutes on 2 cores; CI runs it) or `full` (the default: the README's stores and settings;
  the long studies are recomputed where a function does it in minutes, otherwise read from their committed
  results, whose commands are given).
- **Output folder** (`VHSLAB_FIGS_OUT`, default `out/paper_figs`): figures are written there, never over
  the shipped files in `docs/`.
"""

SETUP = """import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import vhslab
from vhslab import figures
from vhslab.figures.style import save_figure

MODE = os.environ.get("VHSLAB_FIGS_MODE", "full")
assert MODE in ("quick", "full"), f"VHSLAB_FIGS_MODE is quick or full, got {MODE!r}"
QUICK = MODE == "quick"
ROOT = Path(os.environ.get("VHSLAB_ROOT", ".")).resolve()
DOCS = ROOT / "docs"
OUT = Path(os.environ.get("VHSLAB_FIGS_OUT", ROOT / "out" / "paper_figs")).resolve()
assert OUT != DOCS.resolve(), "figures go to a new folder, never over the shipped docs/"
OUT.mkdir(parents=True, exist_ok=True)
WRITTEN = []
T0 = time.perf_counter()


def save(fig, name):
    \"\"\"Save as OUT/name.png and .pdf; the notebook shows the open figure once, at the end of its cell.\"\"\"
    WRITTEN.extend(save_figure(fig, OUT / name))


world = vhslab.load_world()
verifier = vhslab.load_verifier()
print(f"mode {MODE}, figures to {os.path.relpath(OUT, ROOT)}")
"""

STORES = """# Two stores: the probes' training suite (`train`) and held-out GenEval-style prompts (`geneval-shapes`);
# they never share a prompt meaning. Quick: a slice of each; full: the README's sizes.
STORES = OUT / "stores"
train_prompts = vhslab.load_suite("train")
test_prompts = vhslab.load_suite("geneval-shapes")
if QUICK:
    train_prompts, test_prompts, n_train, n_test = train_prompts[::6], test_prompts[::12], 4, 4
else:
    n_train, n_test = 10, 4
stores = {}
for name, prompts, n in (("train", train_prompts, n_train), ("test", test_prompts, n_test)):
    path = STORES / f"{name}-{MODE}.zarr"  # an interrupted extraction resumes; a finished one is only checked
    vhslab.extract(world.pipeline, prompts, path, n_per_prompt=n, sites="all,ae_latent,image", gen=world.gen_config,
                   progress=False, verify=False)
    stores[name] = vhslab.open_store(path)
    print(name, stores[name].sizes["sample"], "candidates")
"""

CELLS = [
    ("""## 1. World samples

What the shipped world generates for held-out prompts, one row per GenEval tag, framed by the evaluator's
verdict. Data: `vhslab.extract` on `geneval-shapes` (the `test` store above); CLI: `vhslab world samples`.
Supports: the world is hard enough to verify (Bo1 overall 0.636 on `geneval-shapes`, `docs/verifier_eval.json`).""",
     """test = stores["test"]
tags = sorted(set(map(str, test.tag.values)))
rows, captions, marks = {}, {}, {}
for tag in tags:
    idx = np.flatnonzero(test.tag.values == tag)[::4][:6]
    rows[tag] = list(test["image"].values[idx])
    captions[tag] = [str(p).removeprefix("a photo of ")[:28] for p in test.prompt.values[idx]]
    marks[tag] = [bool(v) for v in test.verdict.values[idx]]
save(figures.image_grid(rows, captions, marks, cell=1.3, title="the world's samples by tag", suite="geneval-shapes"),
     "world_samples")"""),
    ("""## 2. Probe sweep

What each block knows: linear (and, in full mode, MLP) probes for the verdict and the found colour of the
first object, by depth, with 95% intervals over prompt meanings and the prompt-only baseline. Data:
`vhslab.run_sweep` (CLI `vhslab probe --data train.zarr --targets verdict,found_color ...`). Supports: the
verdict is readable from mid-depth blocks above the prompt-only baseline (full run: block 9, AUROC 0.771
vs baseline 0.684, `docs/probes_world.json`).""",
     """probes = ["linear"] if QUICK else ["linear", "mlp"]
sweep = vhslab.run_sweep(stores["train"], ["verdict", "found_color"], probes, extra_sites=("ae_latent",),
                         k=3 if QUICK else 5, select=False, n_boot=50 if QUICK else 1000, progress=False)
save(figures.plot_probe_sweep(sweep.ds, metrics=["auroc", "auroc_within"], suite="train"), "probe_sweep")"""),
    ("""## 3. Verifier against probe, by site

The VHS verifier trained at each site (blocks, `ae_latent`, `vision`, `text`) beside the best probe of that
site, on the `geneval-shapes` test candidates, with 95% intervals over meanings. Data: the committed sweep
`docs/verifier_sweep.nc` (`vhslab verifier sweep`, about 12 minutes on one core: not rerun here). Supports:
the verifier's within-prompt AUROC peaks in late blocks (block 10: 0.620).""",
     """sweep_nc = xr.load_dataset(DOCS / "verifier_sweep.nc")
save(figures.plot_verifier_depth(sweep_nc, title="VHS verifier vs best probe by site (plain recipe)"), "verifier_depth")"""),
    ("""## 4. Verifier against probe, by site: the distilled recipe

The same sweep with the recipe that distils a linear within-prompt ranker (the "teacher", `teacher_weight`
5) into the verifier. Data: `docs/verifier_sweep_teacher.nc` (`vhslab verifier sweep --teacher-weight 5`).
Supports: distillation lifts the late blocks' within-prompt AUROC (block 10: 0.708 vs 0.620).""",
     """sweep_t = xr.load_dataset(DOCS / "verifier_sweep_teacher.nc")
save(figures.plot_verifier_depth(sweep_t, title="VHS verifier vs best probe by site (distilled recipe)"),
     "verifier_depth_teacher")"""),
    ("""## 5. Verifier, probe and teacher side by side

The shipped verifier (block 10), the best probe of its site and the linear ranker it was distilled from,
on the same test candidates, with 95% intervals and '*' where the paired difference to the verifier excludes 0.
Data: `vhslab verifier eval --json` (`docs/verifier_eval.json` in quick mode; `evaluate_verifier()` in full
mode). Supports: the verifier matches the probe (AUROC difference -0.000, interval [-0.018, 0.021]) and beats
the teacher's pooled AUROC (+0.118).""",
     """if QUICK:
    report = json.loads((DOCS / "verifier_eval.json").read_text())
else:
    from vhslab.verifier.report import evaluate_verifier
    report = evaluate_verifier(progress=False).to_json()
metrics = ("auroc", "within_prompt_auroc", "gain")
results = {"verifier": {m: report[m] for m in metrics},
           "probe": {**{m: report["probe"][m] for m in metrics}, "minus_first": {m: {"ci": [-x for x in reversed(report["verifier_minus_probe"][m]["ci"])]} for m in metrics}}}
if "teacher" in report:
    results["teacher"] = {**{m: report["teacher"][m] for m in metrics},
                          "minus_first": {m: {"ci": [-x for x in reversed(report["verifier_minus_teacher"][m]["ci"])]} for m in metrics}}
results["text-only"] = {"auroc": report["text_only_auroc"], "within_prompt_auroc": report["text_only_within_prompt_auroc"]}
save(figures.plot_side_by_side(results, metrics, suite="geneval-shapes (verifier-test)", n=report["n_prompt_rows"]),
     "side_by_side")"""),
    ("""## 6. Where the verifier and the evaluator disagree, per tag

Per GenEval tag, the shipped verifier's decision (P(yes) > 0.5) against the evaluator's verdict. Data: the
verifier's scores on the test store (`LatentVerifier.score`), counted here. Supports: where the verifier's
errors lie (e.g. `position` and `counting`, the tags with the lowest Bo1).""",
     """test = stores["test"]
hidden = test["hidden"].sel(layer=10).values.astype("float32")
scores = verifier.score(hidden, [str(p) for p in test["prompt"].values])
frame = pd.DataFrame({"tag": [str(t) for t in test.tag.values], "evaluator": test.verdict.values.astype(int),
                      "verifier": (np.asarray(scores) > 0.5).astype(int)})
counts = frame.groupby(["tag", "evaluator", "verifier"]).size().to_xarray().fillna(0)
counts = counts.reindex(evaluator=[0, 1], verifier=[0, 1], fill_value=0)
save(figures.plot_tag_confusion(counts, suite="geneval-shapes"), "tag_confusion")"""),
    ("""## 7. Best-of-N at a matched budget

GenEval-style overall score of Best-of-N on each path (the VHS verifier at block 10, the vision path, the
autoencoder latent, no search, the oracle, noise search) against the budget, per cost model. Data: the
committed `docs/bestofn.nc` (`vhslab bestofn`, a pool of 40 candidates per prompt). Supports: at a matched
budget the VHS path beats the vision path (`docs/bestofn.json`: diff vhs-vision with its paired interval).""",
     """table = xr.load_dataset(DOCS / "bestofn.nc")
save(figures.plot_budget_curve(table, suite="geneval-shapes"), "budget_curve")"""),
    ("""## 8. Latency breakdown

Milliseconds one candidate spends in each stage on each path, at batch 4: the world on one CPU thread
(`vhslab bench --arch world`) and SANA-Sprint 1.6B on an H200 (the reference timings in
`vhslab/search/real_size.py`, shipped as the `sana-sprint-1.6b` cost model). Data:
`vhslab.load_cost_model`. Supports: the VHS path skips the decoder and the vision tower (VHS / vision cost
ratio 0.64 on the world, 0.13 at the real size, `docs/bench_world.json`).""",
     """def breakdown(cm, block):
    dit = cm.batch_4["dit_block"]
    every = dict(dit=dit * cm.num_blocks)
    return {f"vhs (block {block})": dict(dit=dit * (block + 1), llm_prefill=cm.batch_4["llm_prefill"]),
            "ae": {**every, "llm_prefill": cm.batch_4["llm_prefill"]},
            "vision": {**every, **{s: cm.batch_4[s] for s in ("decode", "vision_encode", "llm_prefill")}},
            "oracle": {**every, "decode": cm.batch_4["decode"]}}


world_cm, real_cm = vhslab.load_cost_model("world"), vhslab.load_cost_model("sana-sprint-1.6b")
data = {f"world ({world_cm.card})": breakdown(world_cm, 10),
        f"SANA-Sprint 1.6B ({real_cm.card}, bf16)": breakdown(real_cm, real_cm.block_at(10, world_cm.num_blocks))}
save(figures.plot_latency_breakdown(data, title="per-candidate latency by stage and path (batch 4)"), "latency_breakdown")"""),
    ("""## 9. Activation patching and colour steering

The share of wrong candidates whose verdict flips to correct when a block's tokens (all, or one image
quadrant) are patched from a correct candidate of the same prompt, beside the control (another prompt's
tokens), and colour steering along a probe direction against a random one, with the paired interval.
Data: `docs/patching.json` in quick mode (`vhslab patch`, about 6 minutes); full mode reruns
`vhslab.analysis.interventions.patch_study`. Supports: patching whole blocks flips 12% of verdicts at
every block; steering beats its random control only at some blocks (e.g. block 8: 0.175 vs 0, [0.07, 0.30]).""",
     """if QUICK:
    raw = json.loads((DOCS / "patching.json").read_text())
    blocks = [int(b) for b in raw["flip"]]
    regions = list(raw["flip"][str(blocks[0])])
    grid = lambda key: (("block", "region"), [[raw[key][str(b)][r] for r in regions] for b in blocks])  # noqa: E731
    steer = {str(b): raw["steering"][str(b)] for b in blocks}
    patch_ds = xr.Dataset({"flip": grid("flip"), "flip_control": grid("flip_control"),
                           "steer_success": ("block", [steer[str(b)]["success"] for b in blocks]),
                           "steer_control": ("block", [steer[str(b)]["control"] for b in blocks]),
                           "steer_diff_lo": ("block", [steer[str(b)]["diff_ci"][0] for b in blocks]),
                           "steer_diff_hi": ("block", [steer[str(b)]["diff_ci"][1] for b in blocks])},
                          coords={"block": blocks, "region": regions}, attrs={"n_pairs": raw["n_pairs"], "coefficient": 1.0})
else:
    from vhslab.analysis.interventions import patch_study
    res = patch_study(world, verifier, stores["test"], list(range(12)), n_pairs=50, train=stores["train"])
    summary = res.to_json()
    patch_ds = res.ds.assign(steer_diff_lo=("block", [summary["steering"][str(b)]["diff_ci"][0] for b in res.ds.block.values]),
                             steer_diff_hi=("block", [summary["steering"][str(b)]["diff_ci"][1] for b in res.ds.block.values]))
save(figures.plot_patching(patch_ds, suite="geneval-shapes"), "patching")"""),
    ("""## 10. Attribution

Where on the latent grid the verifier's verdict comes from, for examples spread over tags and verdicts:
integrated gradients over the image, patch ablation, the model-free token-norm control, and the prompt
words' IG. Data: `vhslab.analysis.study.attribution_study` (CLI `vhslab attribute`). Supports: the maps pass
deletion against random tokens but not against token norm (`docs/attribution.json`: IG vs token norm
-0.08, [-0.28, 0.10]), so they are read as "uninformative beyond norm".""",
     """from vhslab.analysis.study import attribution_study

att = attribution_study(verifier, stores["test"], n=8 if QUICK else 64, n_steps=4 if QUICK else 16,
                        n_boot=50 if QUICK else 1000, pipe=world.pipeline)
save(figures.plot_attribution(att.ds, k=6, suite="geneval-shapes"), "attribution")"""),
    ("""## 11. Representation geometry

Linear CKA between every pair of sites, the CKA of each block with the next beside a randomly initialised
DiT (full mode), and a PCA of three sites coloured by the verdict. Data:
`vhslab.analysis.geometry.geometry_study` (CLI `vhslab geometry`). Supports: neighbouring blocks are similar
(CKA > 0.9 mid-depth) while `ae_latent` and `vision` share little with the blocks (`docs/geometry.json`).""",
     """from vhslab.analysis.geometry import geometry_study

geo = geometry_study(stores["test"], n=200 if QUICK else 1000, umap=False, n_boot=20 if QUICK else 200,
                     world=None if QUICK else world)
save(figures.plot_geometry(geo.ds, kind="pca", sites=["block.2", "block.10", "ae_latent"], suite="geneval-shapes"),
     "geometry")"""),
    ("""## 12. From noise to semantics: (step x block) probe maps

Per target (verdict, colour, shape, count, the final latent), a probe fitted at every (denoising step, block)
of the multi-step teacher's train store and scored on its held-out test store: the gap to the prompt-only
baseline (colour), the cells decodable by the grid's Bonferroni rule (dots) and the earliest one (ring). Data:
the committed `docs/steps/probe_grid.nc` (`vhslab probe-grid --train teacher-train.zarr --test teacher-test.zarr
--verdict-steps 0,2,4,6,7 --verifier --out docs/steps/probe_grid.nc`; not rerun here). Supports: the earliest
decodable (step, block) of each target (`docs/steps/probe_grid.json`, `targets.*.earliest_decodable`).""",
     """STEPS = DOCS / "steps"
grid_nc, sigma_nc = STEPS / "probe_grid.nc", STEPS / "probe_grid_sigma.nc"
if QUICK and not grid_nc.exists():
    print(f"{os.path.relpath(grid_nc, ROOT)} is not committed yet: the step maps are skipped in quick mode")
else:
    step_grid = xr.load_dataset(grid_nc)
    save(figures.plot_step_maps(step_grid), "step_maps")"""),
    ("""## 13. Verdicts by noise level

Within-prompt AUROC of the verdict against sigma (noise, left, to the clean image, right): the linear probe at
each step's best block and the VHS verifier trained at that step, with 95% intervals over test meanings.
Data: the committed `docs/steps/probe_grid_sigma.nc` (the same `vhslab probe-grid ... --verdict-steps
0,2,4,6,7 --verifier --out docs/steps/probe_grid.nc` writes it beside the maps; not rerun here). Supports:
how early the verdict can be read, per step with its interval (`docs/steps/probe_grid.json`,
`verdict_by_step`).""",
     """from vhslab.verifier import StepVerdicts

if QUICK and not sigma_nc.exists():
    print(f"{os.path.relpath(sigma_nc, ROOT)} is not committed yet: AUROC vs sigma is skipped in quick mode")
else:
    by_step = StepVerdicts(xr.load_dataset(sigma_nc), {})
    n_sigma = by_step.ds.attrs.get("n_test")
    if n_sigma is None and grid_nc.exists():  # results written before `n_test` was recorded: the grid's test store
        n_sigma = int(xr.load_dataset(grid_nc)["n_test"].max())
    save(figures.plot_auroc_vs_sigma(by_step.curves(), n=n_sigma), "auroc_vs_sigma")"""),
    ("""## 14. Causal timing: when is the colour fixed?

For 20 colour pairs of `geneval-shapes`, the recipient is generated again with one block's output (or the
noisy latent x_t) at one denoising step replaced by the donor's; the map shows the rate at which the final
image takes the donor's colour minus the control donor's, with paired 95% intervals over recipient prompts.
Data: the committed `docs/steps/patch_timing.nc` (`vhslab patch-timing --pairs 20 --steps 0,2,4,6 --blocks
0,3,6,9,11 --out docs/steps/patch_timing.nc`; not rerun here). Supports: only the noisy latent carries the
colour (x_t at step 2: 0.60 [0.40, 0.80], up to step 6: 1.00), while no single block's output at any step
moves it (`docs/steps/patch_timing.json`: `last_step_that_moves_attribute`, control flip 0.0).""",
     """save(figures.plot_timing(xr.load_dataset(DOCS / "steps" / "patch_timing.nc")), "patch_timing")"""),
    ("""## 15. Causal timing: a correct candidate into a wrong one

For 20 held-out prompts with one correct and two wrong teacher candidates, the wrong recipient is generated
again with one block's output (or x_t) at one step replaced by the correct candidate's; the control donor is
the other wrong candidate. The map shows the rate at which the recipient becomes correct minus the control's,
with paired 95% intervals over recipient prompts. Data: the committed `docs/steps/patch_correct.nc`
(`vhslab patch-timing --kind correctness --pairs 20 --steps 0,2,4,6 --blocks 0,3,6,9,11 --out
docs/steps/patch_correct.nc`; not rerun here). Supports: correctness lives in the noisy latent (x_t: 1.00 at
every step, control 0.00), while one step's block output from the correct candidate fixes no more recipients
than a wrong one's (at step 0: -0.25 [-0.50, 0.00]; `docs/steps/patch_correct.json`).""",
     """save(figures.plot_timing(xr.load_dataset(DOCS / "steps" / "patch_correct.nc")), "patch_correct")"""),
    ("""## 16. Early pruning against Best-of-N and the one-step student

GenEval-style overall score at a matched budget (in plain teacher generations) of early pruning (score the
teacher's candidates by the vision verifier on the decoded x0_hat at step 4, keep 2, finish those), plain
Best-of-N on the teacher (verifier at the end) and Best-of-N of the one-step student with the VHS verifier,
with 95% intervals over meanings. Data: the committed `docs/steps/prune.nc` (`vhslab prune --prompts
geneval-shapes --rows 139 --budgets 2,4,8 --step 4 --k 2 --scorer vision --cost-model world --seed 1 --out
docs/steps/prune.nc`; not rerun here). Supports: early pruning does not beat Best-of-N at any budget
(prune - BoN at budget 4: +0.012, [-0.018, 0.044]; at 2: -0.025, [-0.065, 0.017]; `docs/steps/prune.json`).""",
     """save(figures.plot_pruning(xr.load_dataset(DOCS / "steps" / "prune.nc"), suite="geneval-shapes"), "pruning")"""),
]

CLOSING = """## Written

Every figure file this run wrote (PNG and PDF), and the time it took."""

CLOSING_CODE = """names = sorted({p.stem for p in WRITTEN})
print(len(WRITTEN), "files:", ", ".join(names))
print(f"{time.perf_counter() - T0:.0f} s in {MODE} mode")
(OUT / "written.json").write_text(json.dumps(sorted(map(str, WRITTEN))))"""

FIGURES = [code.rsplit('"', 2)[-2] for _, code in CELLS]  # the name each section saves, its last string


def build() -> nbformat.NotebookNode:
    """The notebook: an introduction, the set-up, the stores, a markdown + code pair per figure, the list written."""
    cells = [new_markdown_cell(INTRO), new_code_cell(SETUP), new_code_cell(STORES)]
    for text, code in CELLS:
        cells += [new_markdown_cell(text), new_code_cell(code)]
    cells += [new_markdown_cell(CLOSING), new_code_cell(CLOSING_CODE)]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def execute(nb, mode: str, timeout: int = 3600):
    """Run the notebook in place with nbclient, in `mode`, from the repository root."""
    from nbclient import NotebookClient

    os.environ["VHSLAB_FIGS_MODE"] = mode
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    for cell in nb.cells:  # keep what the notebook says, not the libraries' progress bars on stderr
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if o.get("name") != "stderr"]
    return nb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="also run it (nbclient) and keep the outputs")
    parser.add_argument("--mode", choices=("quick", "full"), default="full")
    parser.add_argument("--out", type=Path, default=NOTEBOOK)
    args = parser.parse_args()
    nb = build()
    if args.execute:
        execute(nb, args.mode)
    nbformat.write(nb, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
