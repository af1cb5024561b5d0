"""The pieces a search is made of, on a one-step diffusers pipeline: the prompt encoded once, the
starting noise of a seed, candidates run only to a block, to the final latent, or to pixels, and a
winner finished from its cached block state.

One-step pipelines (SANA-Sprint): the DiT runs once per candidate, so the hidden state of block l
is all the winner needs to be finished. `finish_from_cache` (a replaying `trace`) swaps blocks 0..l
for a replay of that state for one call; everything else (patch embedding, timestep and caption paths, the later
blocks, the decoder) runs as in a plain call, so the winner equals the same candidate made in one
full call.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from vhslab.errors import InputError
from vhslab.pipeline import GenConfig
from vhslab.pixels import decoded_to_uint8, to_uint8
from vhslab.trace.site import Site, SiteError, find_transformer
from vhslab.trace.trace import trace


class SearchError(InputError):
    """Bad input to a search (N < 1, a site the generator lacks, a budget too small, ...)."""


@contextlib.contextmanager
def finish_from_cache(pipe, block: int, cached: torch.Tensor):
    """Within the context, a call of `pipe` skips blocks 0..block and starts from `cached`: a replaying
    `trace`."""
    try:
        with trace(pipe, replay=(block, cached)):
            yield
    except SiteError as err:
        raise SearchError(str(err)) from None


def initial_noise(pipe, seeds: list[int], gen: GenConfig) -> torch.Tensor:
    """The starting latents the pipeline draws for these seeds (one CPU generator per candidate)."""
    from diffusers.utils.torch_utils import randn_tensor

    dit = find_transformer(pipe)
    shape = (len(seeds), dit.config.in_channels, gen.height // pipe.vae_scale_factor, gen.width // pipe.vae_scale_factor)
    return randn_tensor(shape, generator=[torch.Generator("cpu").manual_seed(s) for s in seeds], dtype=torch.float32)


def decode(pipe, latents: torch.Tensor) -> np.ndarray:
    """Final latents (B, C, h, w) -> uint8 images (B, H, W, 3), as the pipeline decodes them."""
    return decode_ae(pipe, latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor)


def decode_ae(pipe, z: torch.Tensor) -> np.ndarray:
    """The decoder's own input (B, C, h, w), i.e. the `ae_latent` site, -> uint8 images (B, H, W, 3)."""
    return decoded_to_uint8(pipe.vae.decode(z.to(pipe.vae.dtype), return_dict=False)[0])


def ae_tokens(pipe, latents: torch.Tensor) -> torch.Tensor:
    """The `ae_latent` site of final latents: what the pipeline hands to `vae.decode`, as (B, h*w, C)."""
    return (latents / pipe.vae.config.scaling_factor).flatten(2).transpose(1, 2).float()


@dataclass
class Prompted:
    """A prompt encoded once, with the call arguments every candidate of it shares."""

    pipe: object
    prompt: str
    embeds: torch.Tensor
    mask: torch.Tensor
    call: dict

    @classmethod
    @torch.no_grad()
    def encode(cls, pipe, prompt: str, gen: GenConfig) -> Prompted:
        """Encode `prompt` once with the pipeline's text encoder; the call arguments of `gen` kept for every candidate."""
        kwargs = gen.call_kwargs(pipe)
        embeds, mask = pipe.encode_prompt(prompt, device=pipe.device, max_sequence_length=kwargs.get("max_sequence_length", 300),
                                          complex_human_instruction=None, clean_caption=False)[:2]  # SanaPipeline adds the negative pair
        drop = ("max_sequence_length", "complex_human_instruction", "clean_caption")
        return cls(pipe, prompt, embeds, mask, {k: v for k, v in kwargs.items() if k not in drop})

    def _run(self, noise: torch.Tensor, output_type: str):
        b = len(noise)
        return self.pipe(prompt_embeds=self.embeds.expand(b, -1, -1), prompt_attention_mask=self.mask.expand(b, -1),
                         latents=noise, output_type=output_type, **self.call)

    @torch.no_grad()
    def to_block(self, noise: torch.Tensor, block: int) -> torch.Tensor:
        """Hidden states of `block` (B, tokens, channels); the blocks after it do not run."""
        with trace(self.pipe, [Site.block(block)], dtype=torch.float32, stop=True) as t:
            self._run(noise, "latent")
        return t[Site.block(block)][0]

    @torch.no_grad()
    def to_latent(self, noise: torch.Tensor) -> torch.Tensor:
        """Final latents (B, C, h, w): every block, no decode."""
        return self._run(noise, "latent").images

    @torch.no_grad()
    def finish(self, noise: torch.Tensor, block: int, cached: torch.Tensor) -> np.ndarray:
        """One candidate (noise (1, ...), its cached block state) through the later blocks and the decoder."""
        with finish_from_cache(self.pipe, block, cached):
            out = self._run(noise, "np").images
        return to_uint8(out[0])  # as the trace's `image` site rounds
