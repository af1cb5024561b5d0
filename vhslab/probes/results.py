"""ProbeResults: the sweep's xarray Dataset with saving, plotting and layer selection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from vhslab.probes.data import ProbeError

LOWER_IS_BETTER = {"ece"}


@dataclass
class ProbeResults:
    """Wraps `ds` with vars `score` (site, probe, target, metric, fold), `pooled`, `ci_low`,
    `ci_high` (site, probe, target, metric), `baseline*` (prompt-only probe) and `fold_of`."""

    ds: xr.Dataset

    # --- io -------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write to netCDF (`.nc`, via h5netcdf or scipy) or zarr (any other suffix)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".nc":
            self.ds.to_netcdf(path, engine=_nc_engine())
        else:  # variable-length strings: zarr v3 has a spec for them, not for fixed-width ones
            ds = self.ds.copy()
            for name, var in ds.variables.items():
                if var.dtype.kind == "U":
                    ds[name] = var.astype(object)
            from vhslab.data.store import quiet_consolidation

            with quiet_consolidation():
                ds.to_zarr(path, mode="w", consolidated=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ProbeResults:
        path = Path(path)
        ds = xr.load_dataset(path, engine=_nc_engine()) if path.suffix == ".nc" else xr.open_zarr(path).load()
        return cls(ds)

    # --- views ----------------------------------------------------------
    def _check(self, metric: str, target: str | None, probe: str | None) -> tuple[str, str]:
        if metric not in self.ds.metric.values:
            raise ProbeError(f"unknown metric {metric!r}; metrics: {list(self.ds.metric.values)}")
        targets, probes = list(self.ds.target.values), list(self.ds.probe.values)
        target = target or targets[0]
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
        """Best site per (probe, target) on its headline metric, with the prompt-only baseline."""
        out = {}
        for target, kind in zip(self.ds.target.values, self.ds.kind.values, strict=True):
            metric = "r2" if kind == "regression" else "auroc"
            for probe in self.ds.probe.values:
                best = self.best_layer(metric, str(target), str(probe))
                best["baseline"] = float(self.ds["baseline_pooled"].sel(target=target, metric=metric))
                if kind == "binary":
                    best["auroc_within"] = float(
                        self.ds["pooled"].sel(site=best["site"], probe=probe, target=target, metric="auroc_within")
                    )
                out[f"{target}/{probe}"] = best
        return out

    def to_frame(self, var: str = "score"):
        """A long pandas DataFrame of one variable (NaNs dropped), with site coords as columns."""
        df = self.ds[var].to_dataframe().dropna(subset=[var]).reset_index()
        return df

    def plot(self, metrics=None, targets=None, probes=None, **kwargs):
        """Metric against depth, one line per probe and target (seaborn FacetGrid, a panel per metric)."""
        from vhslab.figures.probes import plot_probe_sweep

        return plot_probe_sweep(self.ds, metrics=metrics, targets=targets, probes=probes, **kwargs)


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
