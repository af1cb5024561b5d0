"""ProbeResults: the sweep's xarray Dataset with saving, plotting and layer selection."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from vhslab.data.store import quiet_consolidation
from vhslab.figures.probes import plot_probe_sweep
from vhslab.outputs import Output, atomic_folder, check_complete, owned, saving
from vhslab.probes.data import ProbeError
from vhslab.probes.targets import canonical

LOWER_IS_BETTER = {"ece"}
RESULTS_MARK = "vhslab_probe_results"  # attr that tells our results from anything else at a path


def results_output(path: str | Path) -> Output:
    """The output a probe sweep writes: a netCDF file (`.nc`) or a zarr folder (any other suffix)."""
    path = Path(path)
    return Output(path, "probe --out", "--out", folder=path.suffix != ".nc")


def headline_metric(kind: str) -> str:
    """The metric a target kind is reported and selected on."""
    return "r2" if kind == "regression" else "auroc"


@dataclass
class ProbeResults:
    """Wraps the sweep's dataset: `score` (site, probe, target, metric, fold); `pooled`, `ci_low`,
    `ci_high`, `gap` and `gap_ci_*` (site, probe, target, metric: paired gap to the baseline);
    `baseline*` (probe, target, metric: the prompt-only probe); `inner_score`, `selected_site`
    (per fold) and `selected*` (the selection-free score of the chosen site); `fold_of`."""

    ds: xr.Dataset

    # --- io -------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write to netCDF (`.nc`, via h5netcdf or scipy) or zarr (any other suffix), atomically. An
        existing path is replaced only with `overwrite` and only if it holds earlier probe results
        written by vhslab (see `vhslab.outputs`)."""
        out = results_output(path)
        with owned([out], overwrite):
            return self.write(out)

    def write(self, out: Output) -> Path:
        """Write to an output already claimed (`vhslab.outputs.claim`)."""
        if not out.folder:
            with saving(out) as tmp:
                self.ds.to_netcdf(tmp, engine=_nc_engine())
            return out.path
        ds = self.ds.copy()  # variable-length strings: zarr v3 has a spec for them, not for fixed-width ones
        for name, var in ds.variables.items():
            if var.dtype.kind == "U":
                ds[name] = var.astype(object)
        with atomic_folder(out) as tmp, quiet_consolidation():
            ds.to_zarr(tmp, mode="w", consolidated=True)
        return out.path

    @classmethod
    def load(cls, path: str | Path) -> ProbeResults:
        """Read results written by `save` (netCDF or zarr), refusing a half-written one."""
        path = Path(path)
        check_complete(path, "probe results")
        ds = xr.load_dataset(path, engine=_nc_engine()) if path.suffix == ".nc" else xr.open_zarr(path).load()
        return cls(ds)

    # --- views ----------------------------------------------------------
    def _check(self, metric: str, target: str | None, probe: str | None) -> tuple[str, str]:
        if metric not in self.ds.metric.values:
            raise ProbeError(f"unknown metric {metric!r}; metrics: {list(self.ds.metric.values)}")
        targets, probes = list(self.ds.target.values), list(self.ds.probe.values)
        target = canonical(target) if target else targets[0]  # aliases: color.0 -> found_color.0
        probe = probe or probes[0]
        if target not in targets:
            raise ProbeError(f"target {target!r} not in the results; targets: {targets}")
        if probe not in probes:
            raise ProbeError(f"probe {probe!r} not in the results; probes: {probes}")
        return target, probe

    def curve(self, metric: str = "auroc", target: str | None = None, probe: str | None = None) -> xr.DataArray:
        """Pooled out-of-fold metric against site, for one target and probe."""
        target, probe = self._check(metric, target, probe)
        return self.ds["pooled"].sel(metric=metric, target=target, probe=probe)

    def best_layer(self, metric: str = "auroc", target: str | None = None, probe: str | None = None) -> dict:
        """The site with the best pooled metric (lowest for ECE)."""
        c = self.curve(metric, target, probe)
        if c.isnull().all():
            raise ProbeError(f"metric {metric!r} does not apply to target {c.target.item()!r}")
        i = int(np.nanargmin(c.values) if metric in LOWER_IS_BETTER else np.nanargmax(c.values))
        return _row(c, i, self.ds)

    def choose_layer(
        self,
        metric: str = "auroc",
        target: str | None = None,
        probe: str | None = None,
        *,
        tolerance: float = 0.01,
        cost_weight: float | None = None,
        costs: dict[str, float] | list[float] | None = None,
    ) -> dict:
        """Cost-aware site choice. Cost of block l defaults to (l+1)/num_blocks of the DiT; pass
        measured `costs` (by site name, or one per site) to override.

        With `cost_weight`, maximise metric - cost_weight * cost; otherwise take the cheapest site
        whose metric is within `tolerance` of the best.
        """
        c = self.curve(metric, target, probe)
        cost = self.ds["cost"].values.astype(float).copy()
        if costs is not None:
            if isinstance(costs, dict):
                unknown = set(costs) - set(self.ds.site.values)
                if unknown:
                    raise ProbeError(f"costs for unknown site(s) {sorted(unknown)}")
                cost = np.array([costs.get(s, cost[i]) for i, s in enumerate(self.ds.site.values)], float)
            else:
                if len(costs) != len(cost):
                    raise ProbeError(f"{len(costs)} costs for {len(cost)} sites")
                cost = np.asarray(costs, float)
        v = c.values.astype(float)
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        ok = np.isfinite(v) & np.isfinite(cost)
        if not ok.any():
            raise ProbeError(f"no site has both a {metric} value and a cost")
        if cost_weight is not None:
            util = np.where(ok, sign * v - cost_weight * cost, -np.inf)
            i = int(np.argmax(util))
        else:
            best = np.max(sign * v[ok])
            near = np.flatnonzero(ok & (sign * v >= best - tolerance))
            i = int(near[np.argmin(cost[near])])
        out = _row(c, i, self.ds)
        out["cost"] = float(cost[i])
        return out

    def summary(self) -> dict:
        """Per (target, probe): the selected site (chosen per outer fold by inner CV), its score on
        data that did not choose it, with its CI and its paired gap to the prompt-only baseline; plus
        the maximum over sites, which is selected on the data it is scored on (optimistic)."""
        ds, out = self.ds, {}
        for target, kind, source in zip(ds.target.values, ds.kind.values, ds.source.values, strict=True):
            metric = headline_metric(str(kind))
            metrics = [metric, "auroc_within"] if kind == "binary" else [metric]
            for probe in ds.probe.values:
                key = dict(probe=probe, target=target)
                sites = [str(s) for s in ds["selected_site"].sel(**key).values if str(s)]
                row: dict = {"source": str(source), "metric": metric,
                             "n_samples": int(ds.n_samples.sel(target=target)),
                             "n_prompts": int(ds.n_prompts.sel(target=target)),
                             "n_meanings": int(ds.n_meanings.sel(target=target))}
                if sites:
                    # the most chosen site; a tie goes to the earliest fold's (max over a set followed
                    # string hashing, which changes from process to process)
                    row["selected_site"] = Counter(sites).most_common(1)[0][0]
                    row["selected_per_fold"] = sites
                for m in metrics:
                    one = dict(**key, metric=m)
                    row[m] = {
                        "selected": _pair(ds, "selected", one),
                        "baseline": _pair(ds, "baseline", one),
                        "gap_to_baseline": _pair(ds, "selected_gap", one),
                    }
                if not np.isnan(self.curve(metric, str(target), str(probe)).values).all():
                    row["max_over_sites_optimistic"] = self.best_layer(metric, str(target), str(probe))
                out[f"{target}/{probe}"] = row
        return out

    def site_table(self) -> list[dict]:
        """Every site's pooled headline metric (and within-prompt AUROC for binary targets), per probe
        and target, with its CI and its paired gap to the baseline: one row each."""
        ds, rows = self.ds, []
        for target, kind in zip(ds.target.values, ds.kind.values, strict=True):
            metrics = [headline_metric(str(kind))] + (["auroc_within"] if kind == "binary" else [])
            for probe in ds.probe.values:
                for metric in metrics:
                    for site in ds.site.values:
                        one = dict(site=site, probe=probe, target=target, metric=metric)
                        value = float(ds.pooled.sel(**one))
                        if np.isnan(value):
                            continue
                        rows.append({"target": str(target), "probe": str(probe), "metric": metric, "site": str(site),
                                     "layer": int(ds.layer.sel(site=site)), **_pair(ds, "pooled", one, ci="ci"),
                                     "gap": _pair(ds, "gap", one)})
        return rows

    def report(self) -> dict:
        """What `vhslab probe --json` prints: the selection-aware summary and every site's table."""
        ds = self.ds
        tgt = "verdict" if "verdict" in ds.target.values else str(ds.target.values[0])
        kind = str(ds.kind.sel(target=tgt).values)
        return {"targets": [str(t) for t in ds.target.values], "sites": [str(s) for s in ds.site.values],
                "evaluator": ds.attrs.get("evaluator", ""), "selected": self.summary(),
                "cost_aware": self.choose_layer(headline_metric(kind), tgt, str(ds.probe.values[0])),
                "per_site": self.site_table()}

    def to_frame(self, var: str = "score"):
        """A long pandas DataFrame of one variable (NaNs dropped), with site coords as columns."""
        df = self.ds[var].to_dataframe().dropna(subset=[var]).reset_index()
        return df

    def plot(self, metrics=None, targets=None, probes=None, **kwargs):
        """Metric against depth, one line per probe and target (seaborn FacetGrid, a panel per metric)."""
        return plot_probe_sweep(self.ds, metrics=metrics, targets=targets, probes=probes, **kwargs)


def _pair(ds: xr.Dataset, var: str, sel: dict, ci: str | None = None) -> dict:
    """{"value", "ci"} of a variable and its `_ci_low` / `_ci_high` (NaN -> None, for JSON)."""
    ci = ci or f"{var}_ci"
    names = ("baseline_pooled" if var == "baseline" else var, f"{ci}_low", f"{ci}_high")
    value, lo, hi = (float(ds[v].sel(**sel)) for v in names)
    clean = lambda x: None if np.isnan(x) else round(x, 4)  # noqa: E731
    return {"value": clean(value), "ci": [clean(lo), clean(hi)]}


def _row(c: xr.DataArray, i: int, ds: xr.Dataset) -> dict:
    return {
        "site": str(ds.site.values[i]),
        "layer": int(ds.layer.values[i]),
        "depth": float(ds.depth.values[i]),
        "metric": str(c.metric.item()),
        "value": float(c.values[i]),
        "ci": [float(ds.ci_low.sel(site=ds.site.values[i], probe=c.probe, target=c.target, metric=c.metric)),
               float(ds.ci_high.sel(site=ds.site.values[i], probe=c.probe, target=c.target, metric=c.metric))],
    }


def _nc_engine() -> str:
    try:
        import h5netcdf  # noqa: F401

        return "h5netcdf"
    except ImportError:
        return "scipy"
