"""A within-prompt linear ranker distilled into a verifier (stage-2 knob `teacher_weight`).

What carries over to new meanings in the shapes world is a heavily regularised linear direction
of the mean-pooled states (docs/probes.md); trained on verdicts alone, the LLM route finds it only
at some seeds. The teacher is that probe (`WithinPromptLinear`: scikit-learn's logistic regression on
states centred within each prompt row), fit on the training rows only. Stage 2 then adds a pairwise
loss that pulls the verifier's margin difference between two candidates of one prompt row toward the
teacher's (RankNet with soft targets: a few lines of torch that no library in the stack ships).
Only differences inside a prompt row are distilled, so the teacher says nothing about the prompt's
prior and every same-row pair teaches, whatever its verdicts.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from vhslab.probes.data import site_features
from vhslab.probes.models import WithinPromptLinear
from vhslab.trace.site import Site


def teacher_model(feats: np.ndarray, rows: np.ndarray, y: np.ndarray, prompt_row: np.ndarray, c: float) -> WithinPromptLinear:
    """The teacher, fit on the mean-pooled states `feats` (one row per store row) of `rows` only."""
    return WithinPromptLinear(C=c).fit(feats[rows], y[rows], groups=prompt_row[rows])


def fit_teacher(ds: xr.Dataset, site: Site, rows: np.ndarray, y: np.ndarray, prompt_row: np.ndarray,
                c: float) -> np.ndarray:
    """Teacher scores of every store row (log-odds, meaningful within a prompt row), fit on `rows`
    only. Reads the site once, chunk by chunk: memory is one mean-pooled vector per row."""
    feats = site_features(ds, site)["mean"]
    return teacher_model(feats, rows, y, prompt_row, c).decision_function(feats).astype(np.float32)


def same_row_pairs(groups: np.ndarray) -> int:
    """Unordered pairs of rows that share a prompt row."""
    counts = np.unique(np.asarray(groups), return_counts=True)[1]
    return int((counts * (counts - 1) // 2).sum())


def distill_loss(logits: torch.Tensor, teacher: np.ndarray, groups: np.ndarray, n_pairs: int) -> torch.Tensor:
    """Summed BCE(sigmoid(m_i - m_j), sigmoid(t_i - t_j)) over this process's same-prompt-row pairs,
    m = logit(yes) - logit(no), t the teacher's score, / the global batch's pair count."""
    m = logits[:, 0] - logits[:, 1]
    t = torch.as_tensor(teacher, dtype=m.dtype, device=m.device)
    g = torch.as_tensor(groups, device=m.device)
    i, j = torch.triu_indices(len(m), len(m), 1, device=m.device)
    keep = g[i] == g[j]
    i, j = i[keep], j[keep]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(m[i] - m[j], torch.sigmoid(t[i] - t[j]), reduction="sum")
    return loss / max(n_pairs, 1)
