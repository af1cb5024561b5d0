"""Mutation check of the tests of issue "Every number honest": apply each mutation, run the tests that
 guard it, expect a failure, restore the file. Run from the repository root: python benchmarks/mutations.py [name...]"""
import subprocess
import sys
from pathlib import Path

M = [
    ("meaning: mirrored relations not merged", "vhslab/shapes/prompts.py",
     'f"{names[j]} {MIRROR[relation]} {names[i]}"', 'f"{names[i]} {relation} {names[j]}"',
     "tests/test_prompts.py::test_meaning_ignores_order_and_mirroring_and_nothing_else"),
    ("suites split by prompt text", "vhslab/shapes/suites.py",
     ["chosen = {s.meaning for s in ev}\n    return ev, [s for s in space if s.meaning not in chosen]", "groups.setdefault(spec.meaning, [])"], ["return ev, [s for s in space if s not in ev]", "groups.setdefault(spec.prompt, [])"],
     "tests/test_prompts.py::test_no_meaning_crosses_train_and_geneval_shapes"),
    ("folds by prompt text", "vhslab/probes/sweep.py",
     "meanings = np.array([str(p) for p in ds[\"meaning\"].values])", "meanings = np.array([str(p) for p in ds[\"prompt\"].values])",
     "tests/test_probes_sweep.py::test_folds_and_bootstrap_keep_each_meaning_together"),
    ("baseline: bag of words", "vhslab/probes/models.py",
     'return Pipeline([("structure", onehot), *family.steps])',
     'from sklearn.compose import ColumnTransformer\n    from sklearn.feature_extraction.text import CountVectorizer\n    return Pipeline([("structure", ColumnTransformer([("w", CountVectorizer(binary=True), "prompt")])), *family.steps])',
     "tests/test_probes_sweep.py::test_ordered_baseline_tells_colour_attribution_apart"),
    ("selection on the outer scores (peeking)", "vhslab/probes/sweep.py",
     "chosen = _select(out[\"inner_score\"][:, pi, ti])",
     "chosen = _select(np.repeat(out[\"pooled\"][:, pi, ti, 0][:, None], k, 1))",
     "tests/test_probes_sweep.py::test_selected_site_is_not_optimistic_on_noise"),
    ("self-target site probed", "vhslab/probes/sweep.py",
     "or SELF_SITES.get(t.name) == site.name:", ":",
     "tests/test_probes_sweep.py::test_mlp_probe_and_extra_site"),
    ("seed + i", "vhslab/pipeline.py",
     "sample_seed(seed, spec.prompt, first + k)", "seed + p * n_per_prompt + k",
     "tests/test_extract.py::test_seed_streams_are_independent_per_seed_and_prompt"),
    ("content key without the evaluator", "vhslab/data/extract.py",
     "        evaluator=judge,\n", "",
     "tests/test_extract.py::test_rerun_skips_and_mismatch_is_refused"),
    ("store never consolidated", "vhslab/data/store.py",
     ["        zarr.consolidate_metadata(str(path))", "consolidated=True)"], ["        pass", "consolidated=False)"],
     "tests/test_extract.py::test_store_opens_without_warnings"),
    ("multi-step default 1", "vhslab/pipeline.py",
     "steps = default_steps(pipe) if self.steps is None else self.steps", "steps = 1 if self.steps is None else self.steps",
     "tests/test_extract.py::test_multistep_pipeline_default_steps_and_one_step_refused"),
    ("paired bootstrap with independent draws", "vhslab/probes/metrics.py",
     "b = replicates(kind, y, pred_b, clusters, within, draws, pair_groups)",
     "b = replicates(kind, y, pred_b, clusters, within, cluster_draws(clusters, n_boot, seed + 1), pair_groups)",
     "tests/test_probes_metrics.py::test_paired_bootstrap_resamples_meanings_and_pairs_within_prompts"),
    ("within-prompt pairs across a meaning's prompts", "vhslab/probes/sweep.py",
     "t.kind, t.y, pred, self.meanings, self.within, self.draws, pair_groups=self.prompts)",
     "t.kind, t.y, pred, self.meanings, self.within, self.draws, pair_groups=self.meanings)",
     "tests/test_probes_metrics.py::test_sweep_bootstrap_pairs_candidates_within_a_prompt_not_a_meaning"),
    ("found_class = prompted class", "vhslab/data/extract.py",
     'out["found_class"] = [drawn[j].cls if j < len(drawn) else "" for j in range(N_ITEMS)]',
     'out["found_class"] = [spec.include[j].cls if j < len(spec.include) else "" for j in range(N_ITEMS)]',
     "tests/test_extract.py::test_store_follows_spec_and_matches_capture"),
    ("world score CI by rows", "vhslab/stats.py",
     "uniq, inv = np.unique(meanings[rows], return_inverse=True)", "uniq, inv = np.unique(np.arange(len(rows)), return_inverse=True)",
     "tests/test_world_shipped.py::test_world_score_interval_resamples_meanings_not_rows"),
]
only = sys.argv[1:]
for name, path, old, new, test in M:
    if only and not any(o in name for o in only):
        continue
    p = Path(path)
    text = p.read_text()
    mutated = text
    for o, n in (zip(old, new, strict=True) if isinstance(old, list) else [(old, new)]):
        assert mutated.count(o) == 1, (name, o, mutated.count(o))
        mutated = mutated.replace(o, n)
    p.write_text(mutated)
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", test], capture_output=True, text=True)
    finally:
        p.write_text(text)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
    print(f"{'CAUGHT' if r.returncode else 'MISSED'}  {name}  ->  {last}", flush=True)
