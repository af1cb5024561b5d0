"""Training a LatentVerifier on an activation store.

Stage 1 (alignment, optional): the connector alone learns to turn visual tokens into what the
LLM reads as the caption the evaluator wrote from its detections of that candidate (store
variable `caption`), a language-modelling loss on the caption tokens. Stage 2: connector + LLM
on yes/no (plain XE, class-weighted XE or focal loss).

The store is read one sample chunk at a time in a seeded order (`vhslab.verifier.data`), so
memory does not grow with the store.
Validation is a split by prompt meaning; early stopping keeps the best validation AUROC (or
within-prompt AUROC: `select="within"`). With a `checkpoint` path (a `vhslab.statefile`, never a
pickle) a stopped run resumes where it was. Under `accelerate launch` every process draws the
same global batch and takes its share; the losses are sums normalised by the global batch, so N
processes train the same verifier as one (up to float rounding of the all-reduce).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from accelerate import Accelerator
from tqdm.auto import tqdm

from vhslab.probes.data import check_store, site_statistics
from vhslab.probes.metrics import auroc_binary, auroc_within
from vhslab.trace.site import Site, find_site
from vhslab.verifier.align import align_connector
from vhslab.verifier.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from vhslab.verifier.data import ChunkReader, TrainRows, index_batches, prompt_rows, tag_repeats, train_rows
from vhslab.verifier.model import LatentVerifier, VerifierError
from vhslab.verifier.teacher import distill_loss, fit_teacher, same_row_pairs

LOSSES = ("xe", "weighted", "focal")
SELECT = {"auroc": "val_auroc", "within": "val_auroc_within"}


@dataclass
class VerifierTrainConfig:
    """The training recipe of `train_verifier` (stage 1 and stage 2, the five loss terms, early stopping)."""

    steps: int = 300  # stage 2
    batch_size: int = 32  # global: split over processes under accelerate
    lr: float = 1e-3  # connector
    llm_lr: float = 1e-4  # the LLM (0 freezes it)
    loss: str = "weighted"  # plain XE, class-weighted XE, or focal
    focal_gamma: float = 2.0
    align_steps: int = 0  # stage 1 (connector only, caption LM loss); 0 skips it
    align_lr: float = 1e-3
    val_fraction: float = 0.2
    eval_every: int = 50
    patience: int = 4
    rank_weight: float = 1.0  # + this x pairwise loss on logit(yes) - logit(no) within each prompt row of a batch
    per_prompt: int = 0  # batches hold runs of this many candidates of one prompt row (0: rows shuffled freely)
    mix_chunks: int = 8  # a batch mixes the rows of this many store chunks (a shuffle buffer; memory: 2x that)
    balance: float = 0.0  # oversample tag t by (largest tag's rows / t's rows) ** balance per epoch; 0: none
    val_candidates: int = 16  # validation scores the first k candidates of each prompt row (0: all)
    input_noise: float = 0.0  # stage 2: + this x N(0, 1) per channel on the normalised states (ridge-like regularisation)
    weight_decay: float = 0.0  # stage 2's AdamW weight decay (connector and LLM)
    caption_weight: float = 0.0  # stage 2: + this x stage 1's caption loss on the same batch (keeps the tokens grounded)
    refit: bool = False  # then train again on every row (validation meanings too) for the chosen number of steps
    prompt_dropout: float = 0.0  # share of prompt rows per stage-2 batch asked with an empty prompt (a prompt-free view of quality)
    teacher_weight: float = 0.0  # stage 2: + this x a within-prompt linear ranker distilled pairwise (verifier_teacher)
    teacher_c: float = 0.01  # the teacher's inverse L2 strength (logistic regression C on standardised states)
    select: str = "within"  # validation metric for early stopping: "within" (within-prompt AUROC) or "auroc"
    seed: int = 0

    def __post_init__(self) -> None:
        """Checked on construction, each error naming the field: numbers are finite; the connector's learning
        rates > 0 (the LLM's may be 0: frozen); loss, selection metric, counts and shares in range."""
        bad = [f"{k}={v}" for k, v in vars(self).items() if isinstance(v, float) and not np.isfinite(v)]
        bad += [f"{k}={getattr(self, k)}" for k in ("lr", "align_lr") if not getattr(self, k) > 0]
        bad += [f"{k}={getattr(self, k)}" for k in ("llm_lr", "rank_weight", "teacher_weight") if not getattr(self, k) >= 0]
        if bad:
            raise VerifierError(f"VerifierTrainConfig: {', '.join(bad)} (numbers are finite, lr and align_lr > 0, "
                                "llm_lr and the loss weights >= 0)")
        if self.loss not in LOSSES:
            raise VerifierError(f"unknown loss {self.loss!r}; losses: {', '.join(LOSSES)}")
        if self.select not in SELECT:
            raise VerifierError(f"unknown selection metric {self.select!r}; metrics: {', '.join(SELECT)}")
        if self.mix_chunks < 1:
            raise VerifierError(f"mix_chunks is a number of store chunks, >= 1; got {self.mix_chunks}")
        if self.per_prompt < 0:
            raise VerifierError(f"per_prompt is a number of candidates, >= 0 (0: rows shuffled freely); got {self.per_prompt}")
        if min(self.input_noise, self.weight_decay, self.caption_weight, self.teacher_weight) < 0 or self.teacher_c <= 0:
            raise VerifierError(f"input_noise, weight_decay, caption_weight and teacher_weight are >= 0 and teacher_c > 0; "
                                f"got {self.input_noise}, {self.weight_decay}, {self.caption_weight}, {self.teacher_weight} "
                                f"and {self.teacher_c}")
        if not 0 <= self.prompt_dropout < 1:
            raise VerifierError(f"prompt_dropout is a share of prompt rows in [0, 1); got {self.prompt_dropout}")


def score_rows(verifier: LatentVerifier, read: ChunkReader | None, rows: np.ndarray, prompts: np.ndarray,
               batch_size: int = 64) -> np.ndarray:
    """Scores of store rows (sorted), read chunk by chunk; `read` None for a text-only verifier."""
    out = [verifier.score(None if read is None else read(rows[lo:lo + batch_size]), list(prompts[rows[lo:lo + batch_size]]))
           for lo in range(0, len(rows), batch_size)]
    return np.concatenate(out) if out else np.zeros(0)


def _answer_loss(logits: torch.Tensor, target: torch.Tensor, cfg: VerifierTrainConfig, weight: torch.Tensor,
                 norm: float) -> torch.Tensor:
    """Summed per-row loss over this process's rows / `norm` (the global batch's normaliser)."""
    target, weight = target.to(logits.device), weight.to(logits.device)
    nll = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    if cfg.loss == "weighted":
        nll = weight[target] * nll
    elif cfg.loss == "focal":
        nll = (1 - torch.exp(-nll)) ** cfg.focal_gamma * nll
    return nll.sum() / norm


def _pairs(y: np.ndarray, groups: np.ndarray) -> int:
    """(positive, negative) pairs of the same prompt row."""
    return int(sum((y[groups == g] == 1).sum() * (y[groups == g] == 0).sum() for g in np.unique(groups)))


def _rank_loss(logits: torch.Tensor, y: np.ndarray, groups: np.ndarray, n_pairs: int) -> torch.Tensor:
    """Summed softplus(-(m_pos - m_neg)) over this process's same-prompt (positive, negative) pairs,
    m = logit(yes) - logit(no), / the global batch's pair count (a Bradley-Terry ranking loss: what
    Best-of-N needs is the order inside a prompt, which the per-row loss shares with the prompt prior)."""
    m = logits[:, 0] - logits[:, 1]
    g, pos = torch.as_tensor(groups, device=m.device), torch.as_tensor(y == 1, device=m.device)
    pairs = (g[:, None] == g[None, :]) & pos[:, None] & ~pos[None, :]
    return torch.nn.functional.softplus(m[None, :] - m[:, None])[pairs].sum() / max(n_pairs, 1)


def _share(idx: np.ndarray, groups: np.ndarray, acc) -> np.ndarray:
    """This process's rows of a global batch, whole prompt rows at a time (pairs never straddle processes)."""
    _, k = np.unique(groups[idx], return_inverse=True)
    if k.max() + 1 < acc.num_processes:  # every process sees the same batch: all raise together
        raise VerifierError(f"a batch holds {k.max() + 1} prompt rows for {acc.num_processes} processes; the ranking loss "
                            "keeps prompt rows whole: raise batch_size or set rank_weight=0 and teacher_weight=0")
    return idx[k % acc.num_processes == acc.process_index]


def _asked(prompts: np.ndarray, prompt_row: np.ndarray, rows: np.ndarray, cfg: VerifierTrainConfig, step: int) -> list[str]:
    """The prompt texts the batch rows are asked with: whole prompt rows dropped to "" at `cfg.prompt_dropout`
    (drawn from the seed and step, so a resumed run asks the same), so ranking pairs share their question."""
    asked = prompts[rows].copy()
    if cfg.prompt_dropout:
        drop = np.random.default_rng([cfg.seed, step]).random(int(prompt_row.max()) + 1) < cfg.prompt_dropout
        asked[drop[prompt_row[rows]]] = ""
    return list(asked)


def _noisy(hidden: torch.Tensor, verifier: LatentVerifier, n_global: int, places: np.ndarray, cfg: VerifierTrainConfig,
           step: int) -> torch.Tensor:
    """The states at `places` of a global batch of `n_global` rows plus `cfg.input_noise` standard deviations
    of each channel of Gaussian noise, drawn for the whole batch from the seed and step (so DDP processes
    and resumed runs add the same)."""
    if not cfg.input_noise:
        return hidden
    noise = torch.randn((n_global, *hidden.shape[1:]), generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
    scale = torch.sqrt(verifier.var.float() + verifier.config.eps)
    return hidden + cfg.input_noise * scale * noise[torch.as_tensor(places)]


def _accelerator():
    """One process, or this one of `accelerate launch`'s."""
    return Accelerator(cpu=not torch.cuda.is_available())


def _check_store(ds: xr.Dataset, site: str, cfg: VerifierTrainConfig) -> tuple[xr.Dataset, Site | None]:
    """The checked store and the site's `Site` (None: "text"); refused before any compute when the recipe
    needs what the store or site lacks."""
    ds = check_store(ds)
    where = None if site == "text" else find_site(ds, site)
    if cfg.teacher_weight and where is None:
        raise VerifierError("a text-only verifier has no states for the linear teacher (set teacher_weight=0)")
    if (cfg.align_steps or cfg.caption_weight) and (where is None or "caption" not in ds):
        raise VerifierError("stage 1 and caption_weight need visual tokens and the store's `caption` variable (extract "
                            "the store again)" if where is not None else
                            "a text-only verifier has no caption loss (set align_steps=0 and caption_weight=0)")
    return ds, where


def _check_caption_context(verifier: LatentVerifier, rows: TrainRows) -> None:
    """Stage 1 and the caption loss: the longest caption with the visual tokens fits the LLM's context."""
    limit = getattr(verifier.llm.config, "max_position_embeddings", None)
    with torch.no_grad():
        visual = verifier.visual_tokens(torch.as_tensor(rows.read(rows.train[:1]))).shape[1]
    longest = max(sum(map(len, verifier.caption_pieces(c))) for c in set(rows.captions[rows.train])) + visual
    if limit and longest > limit:
        raise VerifierError(f"a stage-1 input of {longest} tokens (caption and visual tokens) exceeds the LLM's "
                            f"context of {limit}")


def train_verifier(ds: xr.Dataset, site: str, llm, tokenizer, cfg: VerifierTrainConfig | None = None, *,
                   token_grid: int | None = None, progress: bool = True, checkpoint: str | Path | None = None,
                   **verifier_config) -> tuple[LatentVerifier, dict]:
    """Stage 1 (if `cfg.align_steps`) then stage 2 on the store's verdicts at `site` ("text": no
    visual tokens); `verifier_config` goes to VerifierConfig (e.g. system=, question=). Returns the
    verifier (best validation AUROC) and its history. Errors before
    any compute: unknown site or loss, no or one class, no captions for stage 1."""
    cfg = cfg or VerifierTrainConfig()
    ds, where = _check_store(ds, site, cfg)
    rows = train_rows(ds, where, cfg)
    chunk = int(ds.attrs.get("sample_chunk", 64))
    if where is None:
        channels, mean, var = 1, None, None
    else:
        mean, var = site_statistics(ds, where, rows.train)
        channels = int(mean.shape[0])
    given, llm = llm, copy.deepcopy(llm)  # fine-tuned below: the caller's model stays as it was
    verifier = LatentVerifier.create(llm, tokenizer, site, channels, mean=mean, var=var, seed=cfg.seed,
                                     token_grid=token_grid, extra={"train": asdict(cfg), **_generator(ds)}, **verifier_config)
    verifier.check(None if rows.read is None else torch.as_tensor(rows.read(rows.train[:1])), [rows.prompts[rows.train[0]]],
                   site)
    acc = _accelerator()
    identity = {"config": asdict(cfg), "store": ds.attrs.get("content_key"), "site": site, "token_grid": token_grid,
                **verifier_config}
    state = load_checkpoint(checkpoint, identity)
    history: list[dict] = state["history"] if state else []
    if cfg.align_steps or cfg.caption_weight:
        _check_caption_context(verifier, rows)
    if cfg.align_steps:
        align_connector(verifier, rows.read, rows.train, rows.captions, cfg, acc, chunk, state, (checkpoint, identity), progress,
               history)
    teacher = fit_teacher(ds, where, rows.train, rows.y, rows.prompt_row, cfg.teacher_c) if cfg.teacher_weight else None
    losses = StepLoss(cfg, rows, teacher)
    batches = index_batches(rows.train, chunk, cfg.batch_size, cfg.seed, tag_repeats(ds, rows.train, cfg.balance),
                            cfg.mix_chunks, rows.prompt_row, cfg.per_prompt)
    _stage2(verifier, where is not None, rows, losses, batches, cfg, acc, state, (checkpoint, identity), progress, history,
            site)
    verifier.eval()
    chosen = max((h for h in history if h["stage"] == 2), key=lambda h: (h[SELECT[cfg.select]], -h["step"]))
    refit_history = None
    if cfg.refit:  # the step was chosen on held-out meanings; now every meaning trains, as long as that
        again = replace(cfg, refit=False, val_fraction=0.0, steps=chosen["step"], eval_every=chosen["step"], patience=1)
        ckpt = None if checkpoint is None else Path(checkpoint).with_name(Path(checkpoint).name + ".refit")
        verifier, done = train_verifier(ds, site, given, tokenizer, again, token_grid=token_grid, progress=progress,
                                        checkpoint=ckpt, **verifier_config)
        verifier.config.extra["train"] = asdict(cfg)
        refit_history = done["history"]
    meanings = np.array([str(m) for m in ds["meaning"].values])
    return verifier, {"history": history, "refit_history": refit_history,
                      "best_val_auroc": chosen["val_auroc"], "best_val_within": chosen["val_auroc_within"],
                      "best_step": chosen["step"], "n_train": len(rows.train), "n_val": len(rows.val),
                      "val_meanings": len(np.unique(meanings[rows.val])), "processes": acc.num_processes}


class StepLoss:
    """Stage 2's loss of one global batch, term by term: the answer loss (`cfg.loss`: plain, class-weighted or
    focal cross-entropy on yes / no), and under their flags the within-prompt ranking loss (`rank_weight`),
    the distilled linear teacher (`teacher_weight`), the caption loss (`caption_weight`); `input_noise` and
    `prompt_dropout` change what the model is shown (`_noisy`, `_asked`)."""

    def __init__(self, cfg: VerifierTrainConfig, rows: TrainRows, teacher: np.ndarray | None) -> None:
        self.cfg, self.rows, self.teacher = cfg, rows, teacher
        share = np.bincount(rows.y[rows.train], minlength=2) / len(rows.train)
        self.weight = torch.tensor([1 / (2 * share[1]), 1 / (2 * share[0])], dtype=torch.float32)  # [yes, no] balanced

    def places(self, idx: np.ndarray, acc) -> np.ndarray:
        """This process's places in the global batch `idx` (pairwise losses keep prompt rows on one process)."""
        pos = np.arange(len(idx))
        whole_rows = self.cfg.rank_weight or self.cfg.teacher_weight
        return _share(pos, self.rows.prompt_row[idx], acc) if whole_rows else pos[acc.process_index::acc.num_processes]

    def answer(self, logits: torch.Tensor, idx: np.ndarray, mine: np.ndarray) -> torch.Tensor:
        """The answer loss of this process's rows over the global batch's normaliser."""
        target = torch.as_tensor(1 - self.rows.y[idx])  # answer index: 0 = yes, 1 = no
        norm = float(self.weight[target].sum()) if self.cfg.loss == "weighted" else float(len(idx))
        return _answer_loss(logits, torch.as_tensor(1 - self.rows.y[mine]), self.cfg, self.weight, norm)

    def rank(self, logits: torch.Tensor, idx: np.ndarray, mine: np.ndarray) -> torch.Tensor:
        """`rank_weight` x the pairwise ranking loss inside each prompt row."""
        y, g = self.rows.y, self.rows.prompt_row
        return self.cfg.rank_weight * _rank_loss(logits, y[mine], g[mine], _pairs(y[idx], g[idx]))

    def distilled(self, logits: torch.Tensor, idx: np.ndarray, mine: np.ndarray) -> torch.Tensor:
        """`teacher_weight` x the linear teacher's order distilled pairwise."""
        g = self.rows.prompt_row
        return self.cfg.teacher_weight * distill_loss(logits, self.teacher[mine], g[mine], same_row_pairs(g[idx]))

    def caption(self, model, verifier: LatentVerifier, hidden, idx: np.ndarray, mine: np.ndarray) -> torch.Tensor:
        """`caption_weight` x stage 1's caption loss on the same rows (per caption token of the global batch)."""
        captions = self.rows.captions
        nll, _ = model(hidden, [""] * len(mine), list(captions[mine]))
        return self.cfg.caption_weight * nll / sum(len(verifier.caption_pieces(c)[2]) for c in captions[idx])

    def __call__(self, model, verifier: LatentVerifier, idx: np.ndarray, acc, step: int) -> torch.Tensor:
        """The batch's loss on this process (times the process count, as `acc.backward` averages)."""
        cfg, rows = self.cfg, self.rows
        pos = self.places(idx, acc)
        mine = idx[pos]
        hidden = None if rows.read is None else _noisy(torch.as_tensor(rows.read(mine)), verifier, len(idx), pos, cfg, step)
        logits = model(hidden, _asked(rows.prompts, rows.prompt_row, mine, cfg, step))
        loss = self.answer(logits, idx, mine)
        if cfg.rank_weight:
            loss = loss + self.rank(logits, idx, mine)
        if cfg.teacher_weight:
            loss = loss + self.distilled(logits, idx, mine)
        if cfg.caption_weight:
            loss = loss + self.caption(model, verifier, hidden, idx, mine)
        return loss * acc.num_processes


def _optimizer(verifier: LatentVerifier, visual: bool, cfg: VerifierTrainConfig) -> torch.optim.AdamW:
    """Stage 2's AdamW: the connector (if `visual`) at `lr`, the LLM at `llm_lr` (0: frozen)."""
    verifier.llm.requires_grad_(cfg.llm_lr > 0)
    verifier.connector.requires_grad_(visual)
    groups = [{"params": [p for p in verifier.connector.parameters() if p.requires_grad], "lr": cfg.lr},
              {"params": [p for p in verifier.llm.parameters() if p.requires_grad], "lr": cfg.llm_lr}]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)


def _validate(verifier: LatentVerifier, rows: TrainRows, step: int, loss: float) -> dict:
    """A history row: the step's loss and the validation rows' AUROC and within-prompt AUROC."""
    s = score_rows(verifier, rows.read, rows.val, rows.prompts)
    return {"stage": 2, "step": step, "loss": loss, "val_auroc": auroc_binary(rows.y[rows.val], s),
            "val_auroc_within": auroc_within(rows.y[rows.val], s, rows.prompts[rows.val])}


def _stage2(verifier, visual, rows, losses, batches, cfg, acc, state, saving, progress, history, site) -> None:
    """Stage 2: yes / no on the verdicts, validated every `eval_every` steps, stopped after `patience`
    validations without a better one; the best state is loaded into `verifier` at the end."""
    opt = _optimizer(verifier, visual, cfg)
    model, opt = acc.prepare(verifier, opt)
    best, best_state, waited, start = -np.inf, None, 0, 1
    if state and state["stage"] == 2:
        verifier.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        best, best_state, waited, start = state["best"], state["best_state"], state["waited"], state["step"] + 1
    for _ in range(start - 1):
        next(batches)
    bar = tqdm(range(start, cfg.steps + 1), desc=f"verifier {site}", disable=not progress or not acc.is_main_process)
    stopped = waited >= cfg.patience
    for step in bar if not stopped else []:
        model.train()
        loss = losses(model, verifier, next(batches), acc, step)
        opt.zero_grad()
        acc.backward(loss)
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row = _validate(verifier, rows, step, acc.reduce(loss.detach(), "mean").item())
            history.append(row)
            bar.set_postfix(val_auroc=round(row["val_auroc"], 3), within=round(row["val_auroc_within"], 3))
            if row[SELECT[cfg.select]] > best:
                best, waited = row[SELECT[cfg.select]], 0
                best_state = copy.deepcopy(verifier.state_dict())
            else:
                waited += 1
            save_checkpoint(*saving, acc=acc, state={
                "stage": 2, "step": step, "model": verifier.state_dict(), "opt": opt.state_dict(), "best": best,
                "best_state": best_state, "waited": waited, "history": history})
            if waited >= cfg.patience:
                break
    verifier.load_state_dict(best_state)


def _generator(ds) -> dict:
    """The training store's generator fingerprint, recorded in the verifier's config (see `check_generator`)."""
    return {"generator": ds.attrs["generator"]} if "generator" in ds.attrs else {}


__all__ = ["CHECKPOINT", "LOSSES", "SELECT", "StepLoss", "VerifierTrainConfig", "find_site", "prompt_rows", "score_rows",
           "train_verifier"]
