"""Which latent tokens and which prompt words drive a verifier's yes/no, with captum.

The quantity explained is the margin logit(yes) - logit(no) at the answer position.
- Visual tokens: `IntegratedGradients` over the verifier's input hidden states (sample, token,
  channel), baseline = the verifier's stored mean (zero after its normalisation), summed over
  channels: one value per latent-grid cell, comparable across per-layer verifiers (same grid).
  `FeatureAblation` with latent-grid patch masks (patch x patch cells replaced by the mean).
- Prompt tokens: `IntegratedGradients` over the LLM's input embeddings, from a baseline in which
  only the prompt's own words are zeroed (the chat template and the visual tokens stay), summed
  over the embedding width: the words' attributions add up to margin(prompt) - margin(no prompt).
captum's wrappers take `input_ids` only, so a small module returns the margin from the verifier's
own inputs (as `../shared/STYLE.md` advises). `internal_batch_size` bounds memory: at most that
many forward rows at once, whatever the number of samples or integration steps.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from vhslab.errors import InputError


class AttributionError(InputError):
    """Bad input to an attribution (shapes, NaN, a text-only verifier for visual maps, ...)."""


class _HiddenMargin(torch.nn.Module):
    """margin(hidden) for rows `index` of `prompts` (an index tensor, so captum expands it per step)."""

    def __init__(self, verifier, prompts: list[str]):
        super().__init__()
        self.verifier, self.prompts = verifier, list(prompts)

    def forward(self, hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        logits = self.verifier.answer_logits(hidden, [self.prompts[int(i)] for i in index])
        return logits[:, 0] - logits[:, 1]


class _EmbedMargin(torch.nn.Module):
    """margin(inputs_embeds) of the LLM with a fixed attention mask and positions."""

    def __init__(self, verifier):
        super().__init__()
        self.verifier = verifier

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        v = self.verifier
        logits = v.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[:, -1, v.answer_ids]
        return (logits[:, 0] - logits[:, 1]).float()


def chunks(n: int, size: int):
    """Slices of at most `size` samples: captum's `internal_batch_size` cannot go below the number of
    samples it is given, so samples are fed in chunks to keep every forward within the bound."""
    for lo in range(0, n, max(1, size)):
        yield slice(lo, min(n, lo + max(1, size)))


def margin(verifier, hidden: torch.Tensor, prompts: list[str], batch_size: int = 64) -> np.ndarray:
    """logit(yes) - logit(no) per row (no gradients), `batch_size` rows at a time."""
    model = _HiddenMargin(verifier, prompts)
    with torch.no_grad():
        return np.concatenate([model(hidden[c], torch.arange(len(prompts))[c]).numpy()
                               for c in chunks(len(prompts), batch_size)])


def check_inputs(verifier, hidden, prompts) -> torch.Tensor:
    """The hidden states as a float tensor, or a clear error before any compute."""
    if verifier.config.site == "text":
        raise AttributionError("a text-only verifier has no visual tokens to attribute")
    hidden = torch.as_tensor(np.asarray(hidden) if not torch.is_tensor(hidden) else hidden).float()
    if hidden.ndim != 3:
        raise AttributionError(f"hidden states must be (sample, token, channel), got shape {tuple(hidden.shape)}")
    if len(prompts) != len(hidden):
        raise AttributionError(f"{len(prompts)} prompts for {len(hidden)} samples")
    if not torch.isfinite(hidden).all():
        raise AttributionError("hidden states hold NaN or Inf")
    side = round(hidden.shape[1] ** 0.5)
    if side * side != hidden.shape[1]:
        raise AttributionError(f"{hidden.shape[1]} tokens are no square latent grid")
    verifier.check(hidden, list(prompts))
    return hidden


def _baseline(verifier, hidden: torch.Tensor) -> torch.Tensor:
    return verifier.mean.float().reshape(1, 1, -1).expand_as(hidden).contiguous()


def visual_ig(verifier, hidden: torch.Tensor, prompts: list[str], n_steps: int = 16,
              internal_batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(sample, token) integrated gradients of the margin summed over channels, and the
    completeness error |sum - (margin(h) - margin(baseline))| per sample."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(_HiddenMargin(verifier, prompts))
    index = torch.arange(len(prompts))
    maps, deltas = [], []
    for c in chunks(len(prompts), internal_batch_size):
        attr, delta = ig.attribute(hidden[c], baselines=_baseline(verifier, hidden[c]), additional_forward_args=(index[c],),
                                   n_steps=n_steps, internal_batch_size=internal_batch_size, return_convergence_delta=True)
        maps.append(attr.sum(-1).detach().numpy())
        deltas.append(delta.abs().detach().numpy())
    return np.concatenate(maps), np.concatenate(deltas)


def patch_ablation(verifier, hidden: torch.Tensor, prompts: list[str], patch: int = 2,
                   internal_batch_size: int = 64) -> np.ndarray:
    """(sample, token) FeatureAblation: each patch x patch block of latent cells replaced by the mean;
    every cell of a block carries the block's margin change."""
    from captum.attr import FeatureAblation

    side = round(hidden.shape[1] ** 0.5)
    rows, cols = np.divmod(np.arange(side * side), side)
    ids = torch.as_tensor((rows // patch) * ((side + patch - 1) // patch) + cols // patch)
    mask = ids.reshape(1, -1, 1).expand(1, side * side, hidden.shape[2])
    ablation, index, out = FeatureAblation(_HiddenMargin(verifier, prompts)), torch.arange(len(prompts)), []
    for c in chunks(len(prompts), internal_batch_size):
        n = len(index[c])
        attr = ablation.attribute(hidden[c], baselines=_baseline(verifier, hidden[c]), additional_forward_args=(index[c],),
                                  feature_mask=mask, perturbations_per_eval=max(1, internal_batch_size // n))
        out.append(attr[..., 0].detach().numpy())
    return np.concatenate(out)


def prompt_ig(verifier, hidden: torch.Tensor, prompts: list[str], n_steps: int = 16,
              internal_batch_size: int = 64) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
    """(sample, position) integrated gradients over the LLM's input embeddings (left padding; only
    the prompt's words differ from the baseline, so every other position gets 0), the token strings
    of every position ("<visual>" for visual tokens, "" for padding) and a (sample, position) bool
    mask of the prompt's own words."""
    from captum.attr import IntegratedGradients

    v = verifier
    pairs = [v.pieces(p) for p in prompts]
    with torch.no_grad():
        embeds, mask, positions = v.embed_inputs(hidden, pairs)
    embeds = embeds.float()
    length = embeds.shape[1]
    pad = (length - mask.sum(1)).tolist()  # left padding per row
    tokens, is_prompt = [], np.zeros((len(prompts), length), bool)
    for i, (before, after) in enumerate(pairs):
        n_vis = int(mask[i].sum()) - len(before) - len(after)
        words = [v.tokenizer.decode([t]) for t in before] + ["<visual>"] * n_vis + [v.tokenizer.decode([t]) for t in after]
        tokens.append([""] * pad[i] + words)
        prompt_ids = v.tokenizer(prompts[i], add_special_tokens=False).input_ids
        start = _find(after, prompt_ids)
        if start < 0:
            raise AttributionError(f"the prompt's tokens are not found in the verifier's question for {prompts[i]!r}")
        first = pad[i] + len(before) + n_vis + start
        is_prompt[i, first:first + len(prompt_ids)] = True
    ig = IntegratedGradients(_EmbedMargin(v))
    keep = v.llm.get_input_embeddings().weight.dtype
    v.llm.float()
    baseline = embeds.clone()
    baseline[torch.as_tensor(is_prompt)] = 0.0  # only the prompt's words move: the template and the image stay
    out = []
    try:
        for c in chunks(len(prompts), internal_batch_size):
            attr = ig.attribute(embeds[c], baselines=baseline[c], additional_forward_args=(mask[c], positions[c]),
                                n_steps=n_steps, internal_batch_size=internal_batch_size)
            out.append(attr.sum(-1).detach().numpy())
    finally:
        v.llm.to(keep)
    return np.concatenate(out), tokens, is_prompt


def _find(seq: list[int], sub: list[int]) -> int:
    for i in range(len(seq) - len(sub) + 1):
        if seq[i:i + len(sub)] == sub:
            return i
    return -1


def attribute(verifier, hidden, prompts: list[str], *, images: np.ndarray | None = None, n_steps: int = 16,
              patch: int = 2, internal_batch_size: int = 64, text: bool = True) -> xr.Dataset:
    """Every attribution of `verifier` on these samples, as a dataset: `visual_ig` and
    `visual_ablation` (sample, grid_row, grid_col), `prompt_ig` (sample, position) with `token`
    strings, `margin`, `ig_delta` (completeness error) and, if given, the decoded `image`."""
    hidden = check_inputs(verifier, hidden, prompts)
    if not (isinstance(internal_batch_size, int) and internal_batch_size >= 1):
        raise AttributionError(f"internal_batch_size must be an integer >= 1, got {internal_batch_size!r}")
    n, t, _ = hidden.shape
    side = round(t ** 0.5)
    was = verifier.training
    verifier.eval()
    try:
        ig, delta = visual_ig(verifier, hidden, prompts, n_steps, internal_batch_size)
        ablation = patch_ablation(verifier, hidden, prompts, patch, internal_batch_size)
        data = {"visual_ig": (("sample", "grid_row", "grid_col"), ig.reshape(n, side, side)),
                "visual_ablation": (("sample", "grid_row", "grid_col"), ablation.reshape(n, side, side)),
                "margin": (("sample",), margin(verifier, hidden, prompts)), "ig_delta": (("sample",), delta),
                "prompt": (("sample",), np.array(prompts, dtype=object))}
        coords = {}
        if text:
            words, tokens, is_prompt = prompt_ig(verifier, hidden, prompts, n_steps, internal_batch_size)
            data["prompt_ig"] = (("sample", "position"), words)
            data["token"] = (("sample", "position"), np.array(tokens, dtype=object))
            data["is_prompt_token"] = (("sample", "position"), is_prompt)
    finally:
        verifier.train(was)
    if images is not None:
        images = np.asarray(images)
        if images.shape[0] != n or images.ndim != 4:
            raise AttributionError(f"images must be (sample, H, W, 3) for {n} samples, got {images.shape}")
        data["image"] = (("sample", "y", "x", "rgb"), images)
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({"site": verifier.config.site, "n_steps": n_steps, "patch": patch, "baseline": "verifier mean",
                     "quantity": "logit(yes) - logit(no)"})
    return ds
