"""Sites: the named places of a generator (and of a store) that vhslab reads, writes and stores.

    Site.parse("block.7")          # Site(kind='block', index=7)
    str(Site.block(7))             # 'block.7': the name stores and verifiers keep
    Site.parse("block.7@step3")    # block 7 at denoising step 3 (the pipeline's 4th forward call)
    Site.parse("x_t@step3")        # the noisy latent entering step 3; `x0_hat@step3` its clean estimate

Kinds, in their order: `block` (output of `transformer.transformer_blocks[index]`, (B, tokens,
width)), `x_t` (the latent entering a denoising step, as the scheduler's `step` receives it, (B,
channels, h, w)), `x0_hat` (the model's clean-latent estimate at that step, same shape; both exist
only at a step: `x_t@step3`), `ae_latent` (the latent handed to the decoder, (B, h*w, channels)), `image` (decoded pixels,
uint8 (B, H, W, 3)), `vision` (a vision encoder's features of that image) and `text` (no visual
tokens: a verifier that reads only the prompt). This module is the only place that parses or builds
the string form; the rest of vhslab passes `Site` objects and converts strings at its boundary.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vhslab.errors import InputError

KINDS = ("block", "x_t", "x0_hat", "ae_latent", "image", "vision", "text")
STEP_KINDS = ("x_t", "x0_hat")  # made by the scheduler: only at a step (`x_t@step3`)
LATE_KINDS = ("ae_latent", "image", "vision")  # fire once per pipeline call, in the decoder
STORE_VARS = ("ae_latent", "vision")  # whole-model variables a store may hold besides `hidden`
VERIFIER_SITES = "'block.<k>', 'ae_latent', 'vision' or 'text'"  # what a verifier may read, in words
VERIFIER_SITE_PATTERN = r"^(block\.\d+|ae_latent|vision|text)$"  # and as a pattern (schemas)
_PATTERN = re.compile(r"^(?:block\.(\d+)|(x_t|x0_hat|ae_latent|image|vision|text))(?:@step(\d+))?$")
SITE_WORDS = "block.<k>, x_t@step<k>, x0_hat@step<k>, ae_latent, image, vision or text (optionally @step<k>)"


class SiteError(InputError):
    """An unknown or unavailable site; the message lists the valid ones."""


@functools.total_ordering
@dataclass(frozen=True)
class Site:
    """One site. `index`: the block (blocks only); `step`: one forward call of a multi-step pipeline
    (0-based; None = every call)."""

    kind: str
    index: int | None = None
    step: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise SiteError(f"unknown site kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if (self.kind == "block") != (self.index is not None) or (self.index is not None and self.index < 0):
            raise SiteError(f"a block site needs an index >= 0 and only a block has one, got {self.kind!r}, {self.index!r}")
        if self.step is not None and self.step < 0:
            raise SiteError(f"step must be >= 0, got {self.step}")
        if self.kind in STEP_KINDS and self.step is None:
            raise SiteError(f"{self.kind!r} exists only at a denoising step: write '{self.kind}@step<k>' (e.g. {self.kind}@step0)")

    @classmethod
    def parse(cls, text: str | Site) -> Site:
        """'block.7', 'x_t@step2', 'x0_hat@step2', 'ae_latent', 'image', 'vision', 'text', any with '@step<k>'."""
        if isinstance(text, Site):
            return text
        m = _PATTERN.match(str(text).strip())
        if m is None:
            raise SiteError(f"unknown site {text!r}: {SITE_WORDS}")
        block, kind, step = m.groups()
        return cls("block" if block is not None else kind, None if block is None else int(block),
                   None if step is None else int(step))

    @classmethod
    def block(cls, index: int, step: int | None = None) -> Site:
        """The output of DiT block `index`."""
        return cls("block", int(index), step)

    def __str__(self) -> str:
        name = f"block.{self.index}" if self.kind == "block" else self.kind
        return name if self.step is None else f"{name}@step{self.step}"

    @property
    def name(self) -> str:
        """The string form, as stores and verifier configs keep it."""
        return str(self)

    @property
    def is_block(self) -> bool:
        """A DiT block's output."""
        return self.kind == "block"

    @property
    def is_step(self) -> bool:
        """Made by the scheduler at a step (x_t, x0_hat)."""
        return self.kind in STEP_KINDS

    @property
    def key(self) -> tuple[str, int | None]:
        """(kind, index): the site without its step."""
        return self.kind, self.index

    @property
    def is_late(self) -> bool:
        """Made by the decoder (ae_latent, image, vision): fires once per pipeline call."""
        return self.kind in LATE_KINDS

    def sort_key(self) -> tuple[int, int, int]:
        """Blocks by index, then x_t, x0_hat, ae_latent, image, vision, text; steps within a site."""
        return (KINDS.index(self.kind), -1 if self.index is None else self.index, -1 if self.step is None else self.step)

    def __lt__(self, other: Site) -> bool:
        if not isinstance(other, Site):
            return NotImplemented
        return self.sort_key() < other.sort_key()

    def depth(self, num_blocks: int) -> float:
        """index / num_blocks for a block (a store's `depth` coord), 1.0 for ae_latent, NaN otherwise."""
        if self.is_block:
            return self.index / num_blocks
        return 1.0 if self.kind == "ae_latent" else float("nan")


def find_transformer(model: Any) -> Any:
    """The DiT (a torch module) of a pipeline, or the DiT itself: any module with `transformer_blocks`."""
    dit = getattr(model, "transformer", model)
    if not hasattr(dit, "transformer_blocks"):
        raise TypeError(f"{type(dit).__name__} has no `transformer_blocks`: not a supported DiT")
    return dit


def pipeline_sites(model: Any, vision: Any = None, steps: int | None = None) -> list[Site]:
    """The sites `model` (a pipeline or a DiT) offers: its blocks; x_t and x0_hat at each of `steps`
    denoising steps (at step 0 when `steps` is None) if it has a `scheduler`; ae_latent and image if it
    has a decoder; vision if a vision encoder is given."""
    sites = [Site.block(i) for i in range(len(find_transformer(model).transformer_blocks))]
    if callable(getattr(getattr(model, "scheduler", None), "step", None)):
        sites += [Site(kind, step=n) for kind in STEP_KINDS for n in range(1 if steps is None else steps)]
    if getattr(model, "vae", None) is not None:
        sites += [Site("ae_latent"), Site("image")]
        if vision is not None:
            sites.append(Site("vision"))
    return sites


def _store_steps(ds: Any) -> list[int] | None:
    return [int(v) for v in ds["step"].values] if "step" in ds.dims else None


def store_sites(ds: Any, layers: Sequence[int] | None = None, extra: Sequence[str] | None = None,
                text: bool = False, steps: Sequence[int] | None = None) -> list[Site]:
    """The sites a store (an xarray Dataset) holds, in site order: its blocks (all, or `layers`) at
    each stored step (all, or `steps`) of a multi-step store (`block.k@stepN`), then `extra` (default
    every stored x_t@stepN, x0_hat@stepN, ae_latent, vision), then `text` if asked. Unknown layers,
    steps or variables raise SiteError."""
    have = [int(v) for v in ds["layer"].values] if "hidden" in ds else []
    if "hidden" not in ds and (layers or (layers is None and not any(k in ds for k in STEP_KINDS))):
        raise SiteError(f"the store lacks the variable 'hidden'; its variables: {sorted(ds.data_vars)}")
    wanted = have if layers is None else [int(x) for x in layers]
    missing = [layer for layer in wanted if layer not in have]
    if missing:
        raise SiteError(f"layer(s) {missing} not in the store; it has layers {have}")
    stored = _store_steps(ds)
    if steps is not None and (stored is None or any(int(n) not in stored for n in steps)):
        raise SiteError(f"step(s) {[int(n) for n in steps if stored is None or int(n) not in stored]} not in the store; "
                        f"it has {'steps ' + str(stored) if stored else 'no step dim (a one-step store)'}")
    at = [None] if stored is None else [int(n) for n in (stored if steps is None else steps)]
    sites = [Site.block(layer, n) for layer in wanted for n in at]
    if extra is None:
        extra = [str(Site(k, step=n)) for k in STEP_KINDS if k in ds for n in at] + [v for v in STORE_VARS if v in ds]
    for name in extra:
        site = Site.parse(name)
        if not (site.kind in STORE_VARS or site.is_step) or site.kind not in ds or (site.is_step and site.step not in at):
            raise SiteError(f"site {str(name)!r} not in the store; its variables: {sorted(ds.data_vars)}"
                            + (f", steps {stored}" if stored else ""))
        sites.append(site)
    return sorted(sites) + ([Site("text")] if text else [])


def find_site(ds: Any, name: str | Site) -> Site:
    """The store's site called `name` ('block.k', 'block.k@stepN', 'x_t@stepN', 'ae_latent', ...), or a
    SiteError naming the store's sites."""
    known = store_sites(ds)
    site = Site.parse(name) if isinstance(name, Site) or _PATTERN.match(str(name).strip()) else None
    if site is None or site not in known:
        raise SiteError(f"site {str(name)!r} is not in the store; it has {', '.join(map(str, known))} (and 'text' needs none)")
    return site


def site_array(ds: Any, name: str | Site) -> Any:
    """The DataArray of a store's site: `ds.hidden.sel(step=N, layer=k)` for block.k@stepN (no step on a
    one-step store), `ds.x_t.sel(step=N)` for x_t@stepN, `ds.ae_latent` ...; sample dim first."""
    site = find_site(ds, name)
    arr = ds["hidden"].sel(layer=site.index) if site.is_block else ds[site.kind]
    return arr.sel(step=site.step) if site.step is not None else arr


def check_site(site: str | Site, valid: Sequence[Site], what: str = "the generator") -> Site:
    """`site` as a Site if its kind and block are among `valid` (step ignored), else a SiteError listing them."""
    parsed = Site.parse(site) if isinstance(site, Site) or _PATTERN.match(str(site).strip()) else None
    if parsed is None or parsed.key not in {s.key for s in valid}:
        names = ", ".join(dict.fromkeys(str(s) if not s.is_step else f"{s.kind}@step<k>" for s in valid))
        raise SiteError(f"unknown site {str(site)!r}; valid sites of {what}: {names} (or 'all')")
    return parsed


def check_steps(sites: Sequence[Site], steps: int, what: str = "calls") -> None:
    """Every site at a step must be one of the `steps` denoising steps (0 .. steps-1); else a SiteError."""
    late = [str(s) for s in sites if s.step is not None and s.step >= steps]
    if late:
        raise SiteError(f"{', '.join(late)}: the pipeline runs {steps} step(s), so steps are 0-{steps - 1} "
                        f"(set {what} to the number of denoising steps)")


def parse_sites(spec: str | Site | Sequence[str | Site], model: Any, vision: Any = None,
                steps: int | None = None) -> list[Site]:
    """Expand 'all' (every block) and comma lists against what `model` offers, in site order, without
    repeats; unknown sites, or steps beyond `steps` when given, raise SiteError (before any compute)."""
    names = spec.split(",") if isinstance(spec, str) else [spec] if isinstance(spec, Site) else list(spec)
    valid = pipeline_sites(model, vision)
    out: list[Site] = []
    for name in names:
        name = name.strip() if isinstance(name, str) else name
        if name == "all":
            expanded = [s for s in valid if s.is_block]
        else:
            if str(name) == "vision" and vision is None and Site("image") in valid:
                raise SiteError("site 'vision' needs a vision encoder (pass `vision=`); none was given")
            expanded = [check_site(name, valid)]
        out += [s for s in expanded if s not in out]
    if not out:
        raise SiteError("no sites requested")
    if steps is not None:
        check_steps(out, steps)
    return sorted(out)


__all__ = ["KINDS", "LATE_KINDS", "SITE_WORDS", "STEP_KINDS", "STORE_VARS", "VERIFIER_SITES", "VERIFIER_SITE_PATTERN", "Site",
           "SiteError", "check_site", "check_steps", "find_site", "find_transformer", "parse_sites", "pipeline_sites",
           "site_array", "store_sites"]
