"""Capture on real tiny diffusers pipelines (no mocks)."""

import numpy as np
import pytest
import torch

from vhslab.testing.tiny import SANA_CALL as SANA
from vhslab.testing.tiny import generators as gens
from vhslab.testing.tiny import tiny_pixart_pipeline, tiny_sana_sprint_pipeline, tiny_vision_encoder
from vhslab.trace import Capture, parse_sites

torch.set_num_threads(1)
PROMPTS = ["a photo of a red circle", "a photo of two blue squares"]


@pytest.fixture(scope="module")
def sana():
    return tiny_sana_sprint_pipeline(num_layers=4)


def counter(module):
    calls = []
    handle = module.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


def no_hooks_left(pipe):
    blocks = pipe.transformer.transformer_blocks
    return all(len(b._forward_hooks) == 0 for b in blocks) and "decode" not in pipe.vae.__dict__


def test_early_stop_is_bit_exact_and_skips_later_blocks(sana):
    with Capture(sana, "all,ae_latent", dtype=torch.float32) as full:
        sana(PROMPTS, generator=gens(), **SANA)
    calls, handle = counter(sana.transformer.transformer_blocks[2])
    try:
        with Capture(sana, ["block.0", "block.1"], dtype=torch.float32) as early:
            out = sana(PROMPTS, generator=gens(), **SANA)
    finally:
        handle.remove()
    assert "out" not in locals() or out is None  # the forward was stopped
    assert calls == []  # block 2 never ran
    for site in ("block.0", "block.1"):
        assert early.last(site).shape == (2, 64, 16)
        assert torch.equal(early.last(site), full.last(site))
    assert full.last("ae_latent").shape == (2, 64, 4)
    assert no_hooks_left(sana)


def test_downcast_and_cpu_inside_hook(sana):
    with Capture(sana, "block.3", dtype=torch.bfloat16) as cap:
        sana(PROMPTS, generator=gens(), **SANA)
    assert cap.last("block.3").dtype == torch.bfloat16 and cap.last("block.3").device.type == "cpu"
    assert cap["block.3"].shape == (1, 2, 64, 16)


def test_no_hook_left_after_exception_in_forward(sana):
    def boom(*_):
        raise RuntimeError("boom inside the forward")

    handle = sana.transformer.transformer_blocks[2].register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"), Capture(sana, "all,image"):
            sana(PROMPTS, generator=gens(), **SANA)
    finally:
        handle.remove()
    assert no_hooks_left(sana)


def test_unknown_site_fails_before_compute(sana):
    calls, handle = counter(sana.transformer.transformer_blocks[0])
    try:
        with pytest.raises(ValueError) as err, Capture(sana, "block.0,block.9"):
            sana(PROMPTS, generator=gens(), **SANA)
    finally:
        handle.remove()
    assert calls == []
    assert "block.9" in str(err.value) and "block.0, block.1, block.2, block.3, x_t@step<k>, x0_hat@step<k>, ae_latent, image" in str(err.value)
    with pytest.raises(ValueError, match="vision encoder"):
        parse_sites("vision", sana)


def test_missing_calls_are_an_error(sana):
    # Two forward calls expected (e.g. two steps) but the one-step pipeline runs one: a skipped block.
    with pytest.raises(RuntimeError, match=r"block\.1 fired 1 times, expected 2"), \
            Capture(sana, "block.1", calls=2, stop=False):
        sana(PROMPTS, generator=gens(), **SANA)
    assert no_hooks_left(sana)


def test_image_and_vision_sites(sana):
    vision = tiny_vision_encoder()
    with Capture(sana, "image,vision", vision=vision) as cap:
        out = sana(PROMPTS, generator=gens(), **{**SANA, "output_type": "np"})
    img = cap.last("image")
    assert img.dtype == np.uint8 and img.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(img, (out.images * 255).round().astype(np.uint8))
    assert cap.last("vision").shape == (2, 16, 16)
    assert no_hooks_left(sana)


def test_pixart_multi_step_with_guidance():
    pipe = tiny_pixart_pipeline(num_layers=3)
    kw = dict(num_inference_steps=2, guidance_scale=4.5, height=32, width=32, use_resolution_binning=False,
              clean_caption=False, max_sequence_length=8, output_type="latent")
    with Capture(pipe, "all", calls=2, stop=False, dtype=torch.float32, branch="both") as full:
        pipe(PROMPTS, generator=gens(), **kw)
    # classifier-free guidance doubles the batch: (steps, 2B, tokens, width), [uncond, cond]
    assert full["block.2"].shape == (2, 4, 64, 16)
    with Capture(pipe, "block.2", calls=2, stop=False, dtype=torch.float32) as cond:  # the conditional rows by default
        pipe(PROMPTS, generator=gens(), **kw)
    assert torch.equal(cond["block.2"], full["block.2"][:, 2:])
    with Capture(pipe, "block.1", calls=2, dtype=torch.float32, branch="both") as early:
        pipe(PROMPTS, generator=gens(), **kw)
    assert torch.equal(early["block.1"], full["block.1"])
    assert all(len(b._forward_hooks) == 0 for b in pipe.transformer.transformer_blocks)
