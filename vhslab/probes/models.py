"""Probe models: sklearn pipelines (scaling fitted on the training fold only) and a small torch MLP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.class_weight import compute_class_weight

from vhslab.probes.data import ProbeError

PROBES = ("linear", "mlp", "attn")


class TorchMLP(BaseEstimator):
    """One-hidden-layer MLP probe (torch), AdamW on random minibatches for a fixed number of steps.

    Classification uses a class-balanced cross-entropy; regression standardises the targets.
    """

    def __init__(self, task="classification", hidden=128, steps=200, batch=256, lr=2e-3, weight_decay=1e-2,
                 dropout=0.0, seed=0):
        self.task, self.hidden, self.steps, self.batch = task, hidden, steps, batch
        self.lr, self.weight_decay, self.dropout, self.seed = lr, weight_decay, dropout, seed

    def fit(self, X, y):
        """Train on features X and labels (or values) y with AdamW; returns self."""
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        X = torch.as_tensor(np.asarray(X, np.float32))
        if self.task == "classification":
            self.classes_, yi = np.unique(y, return_inverse=True)
            w = compute_class_weight("balanced", classes=np.arange(len(self.classes_)), y=yi)
            loss_fn = torch.nn.CrossEntropyLoss(weight=torch.as_tensor(w, dtype=torch.float32))
            Y, out = torch.as_tensor(yi), len(self.classes_)
        else:
            y = np.asarray(y, np.float32).reshape(len(y), -1)
            self.y_mean_, self.y_std_ = y.mean(0), y.std(0) + 1e-6
            Y, out = torch.as_tensor((y - self.y_mean_) / self.y_std_), y.shape[1]
            loss_fn = torch.nn.MSELoss()
        drop = [torch.nn.Dropout(self.dropout)] if self.dropout else []  # CPU dropout is slow: off by default
        self.net_ = torch.nn.Sequential(
            torch.nn.Linear(X.shape[1], self.hidden), torch.nn.GELU(), *drop, torch.nn.Linear(self.hidden, out)
        )
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.net_.train()
        for _ in range(self.steps):
            idx = torch.randint(0, len(X), (min(self.batch, len(X)),), generator=gen)
            opt.zero_grad()
            loss_fn(self.net_(X[idx]), Y[idx]).backward()
            opt.step()
        self.net_.eval()
        return self

    def _forward(self, X):
        with torch.no_grad():
            return self.net_(torch.as_tensor(np.asarray(X, np.float32)))

    def predict_proba(self, X):
        """Class probabilities (n, classes)."""
        return torch.softmax(self._forward(X), dim=1).numpy()

    def predict(self, X):
        """Predicted classes, or values in the units of y for regression."""
        if self.task == "classification":
            return self.classes_[self.predict_proba(X).argmax(1)]
        return self._forward(X).numpy() * self.y_std_ + self.y_mean_


class MLPClassifierProbe(ClassifierMixin, TorchMLP):
    """The MLP probe for classification targets (sklearn estimator)."""

    def __init__(self, hidden=128, steps=200, batch=256, lr=2e-3, weight_decay=1e-2, dropout=0.0, seed=0):
        super().__init__("classification", hidden, steps, batch, lr, weight_decay, dropout, seed)


class MLPRegressorProbe(RegressorMixin, TorchMLP):
    """The MLP probe for regression targets (sklearn estimator)."""

    def __init__(self, hidden=128, steps=200, batch=256, lr=2e-3, weight_decay=1e-2, dropout=0.0, seed=0):
        super().__init__("regression", hidden, steps, batch, lr, weight_decay, dropout, seed)


class AttnPoolProbe(ClassifierMixin, BaseEstimator):
    """Attention-pooling probe on token features X (sample, token, channel): a learned query scores
    the tokens, their softmax-weighted mean goes to a linear head. Channels are standardised
    with training-fold statistics (StandardScaler cannot take 3-d input)."""

    def __init__(self, steps=200, batch=128, lr=2e-3, weight_decay=1e-2, seed=0):
        self.steps, self.batch, self.lr, self.weight_decay, self.seed = steps, batch, lr, weight_decay, seed

    def _net(self, c, out):
        torch.manual_seed(self.seed)
        return torch.nn.ModuleDict({"score": torch.nn.Linear(c, 1), "head": torch.nn.Linear(c, out)})

    def _logits(self, X):
        a = torch.softmax(self.net_["score"](X).squeeze(-1), dim=1)  # (sample, token)
        return self.net_["head"]((a.unsqueeze(-1) * X).sum(1))

    def fit(self, X, y):
        """Train on token features X (n, tokens, channels) and labels y; returns self."""
        X = np.asarray(X, np.float32)
        self.mu_, self.sd_ = X.mean((0, 1)), X.std((0, 1)) + 1e-6
        X = torch.as_tensor((X - self.mu_) / self.sd_)
        self.classes_, yi = np.unique(y, return_inverse=True)
        w = compute_class_weight("balanced", classes=np.arange(len(self.classes_)), y=yi)
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.as_tensor(w, dtype=torch.float32))
        self.net_, Y = self._net(X.shape[2], len(self.classes_)), torch.as_tensor(yi)
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.steps):
            idx = torch.randint(0, len(X), (min(self.batch, len(X)),), generator=gen)
            opt.zero_grad()
            loss_fn(self._logits(X[idx]), Y[idx]).backward()
            opt.step()
        return self

    def predict_proba(self, X):
        """Class probabilities (n, classes)."""
        X = torch.as_tensor((np.asarray(X, np.float32) - self.mu_) / self.sd_)
        with torch.no_grad():
            return torch.softmax(self._logits(X), dim=1).numpy()

    def predict(self, X):
        """Predicted classes."""
        return self.classes_[self.predict_proba(X).argmax(1)]


class WithinPromptLinear(ClassifierMixin, BaseEstimator):
    """Logistic regression on standardised features centred within each group (prompt row): it learns
    what orders the candidates of one prompt and nothing of the prompt's prior. A linear score's order
    within a group does not depend on the centre, so scoring needs no groups; its probabilities are
    only meaningful within a prompt. Fit with `fit(X, y, groups=...)`."""

    def __init__(self, C=0.1):
        self.C = C

    def fit(self, X, y, groups):
        """Standardise, centre within `groups`, fit the logistic head; returns self."""
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        _, inv = np.unique(np.asarray(groups), return_inverse=True)
        means = np.zeros((inv.max() + 1, Z.shape[1]))
        np.add.at(means, inv, Z)
        Z = Z - (means / np.bincount(inv)[:, None])[inv]
        self.head_ = LogisticRegression(class_weight="balanced", C=self.C, max_iter=3000).fit(Z, y)
        self.classes_ = self.head_.classes_
        return self

    def decision_function(self, X):
        """The linear score (orders the candidates of one prompt)."""
        return self.head_.decision_function(self.scaler_.transform(X))

    def predict_proba(self, X):
        """(1 - p, p) of the linear score (meaningful only within a prompt)."""
        p = 1 / (1 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], axis=1)


def make_probe(name: str, classification: bool, seed: int = 0):
    """A fresh, unfitted probe: `linear` (logistic regression / ridge) or `mlp` after a StandardScaler,
    or `attn` (attention pooling over tokens; classification only)."""
    if name == "attn":
        if not classification:
            raise ProbeError("the attn probe is for classification targets only")
        return AttnPoolProbe(seed=seed)
    if name == "linear":
        head = (
            LogisticRegression(class_weight="balanced", C=1.0, max_iter=2000)
            if classification
            else RidgeCV(alphas=np.logspace(-1, 4, 6))
        )
    elif name == "mlp":
        head = MLPClassifierProbe(seed=seed) if classification else MLPRegressorProbe(seed=seed)
    else:
        raise ProbeError(f"unknown probe {name!r}; known probes: {', '.join(PROBES)}")
    return make_pipeline(StandardScaler(), head)


def prompt_structure(ds) -> pd.DataFrame:
    """The prompt's full structure, in slot order, one row per sample: tag, then per include item
    its class, colour, count and relation (from the store's `prompt_*` labels). "red circle and blue
    square" and "blue circle and red square" differ here, as they do not in a bag of words."""
    cols = {"tag": [str(v) for v in ds["tag"].values]}
    for var, name in (("prompt_class", "class"), ("prompt_color", "color"), ("prompt_count", "count"),
                      ("prompt_relation", "relation")):
        values = np.asarray(ds[var].transpose("sample", "item").values)
        for j in range(values.shape[1]):
            cols[f"{name}_{j}"] = [str(v) for v in values[:, j]]
    return pd.DataFrame(cols)


def make_prompt_baseline(probe: str, classification: bool, seed: int = 0) -> Pipeline:
    """The prompt-only baseline for `probe`: the same model family (`linear` or `mlp`; `attn`, a
    linear head on pooled tokens, gets `linear`) on the one-hot prompt structure of
    `prompt_structure`. Fit on that DataFrame."""
    family = make_probe("linear" if probe == "attn" else probe, classification, seed)
    onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    return Pipeline([("structure", onehot), *family.steps])
