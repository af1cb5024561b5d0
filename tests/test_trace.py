"""vhslab.trace: Site and the one trace context, on real tiny diffusers pipelines (no mocks)."""

import numpy as np
import pytest
import torch

from vhslab.errors import InputError
from vhslab.testing import planted_store
from vhslab.testing.tiny import SANA_CALL as SANA
from vhslab.testing.tiny import generators as gens
from vhslab.testing.tiny import tiny_pixart_pipeline, tiny_sana_sprint_pipeline, tiny_vision_encoder
from vhslab.trace import (
    Site,
    SiteError,
    add_direction,
    find_site,
    parse_sites,
    pipeline_sites,
    store_sites,
    to_uint8,
    trace,
)

torch.set_num_threads(1)
PROMPTS = ["a photo of a red circle", "a photo of two blue squares"]


@pytest.fixture(scope="module")
def sana():
    return tiny_sana_sprint_pipeline(num_layers=4)


def no_hooks_left(pipe):
    vae = pipe.vae
    modules = [*pipe.transformer.transformer_blocks, vae.decoder] + ([vae.post_quant_conv] if getattr(vae, "post_quant_conv", None) else [])
    return (all(not m._forward_hooks and not m._forward_pre_hooks for m in modules) and "decode" not in vae.__dict__
            and getattr(pipe.transformer, "_vhslab_trace", None) is None
            and "step" not in pipe.scheduler.__dict__ and "prepare_latents" not in pipe.__dict__)


def test_site_strings_round_trip_and_order():
    names = ["block.0", "block.7", "block.12", "ae_latent", "image", "vision", "text", "block.7@step3", "x_t@step0", "x0_hat@step7"]
    for name in names:
        assert str(Site.parse(name)) == name and Site.parse(name).name == name
    assert Site.parse("block.7") == Site.block(7) and Site.parse("block.7@step3") == Site.block(7, step=3)
    assert [str(s) for s in sorted(map(Site.parse, ["text", "vision", "block.10", "image", "ae_latent", "block.2"]))] == \
        ["block.2", "block.10", "ae_latent", "image", "vision", "text"]
    assert Site.block(4).depth(8) == 0.5 and Site("ae_latent").depth(8) == 1.0 and np.isnan(Site("vision").depth(8))
    assert [str(s) for s in sorted(map(Site.parse, ["image", "x0_hat@step1", "x_t@step2", "block.1@step2", "x_t@step0", "block.1@step0"]))] == \
        ["block.1@step0", "block.1@step2", "x_t@step0", "x_t@step2", "x0_hat@step1", "image"]
    for bad in ("block.", "block.x", "blocks.1", "latent", "block.1@step", "", "x_t", "x0_hat", "x_t@step-1", "x0hat@step1"):
        with pytest.raises(SiteError):
            Site.parse(bad)
    assert issubclass(SiteError, InputError)


def test_specs_against_a_pipeline_and_a_store(sana):
    assert [str(s) for s in pipeline_sites(sana)] == ["block.0", "block.1", "block.2", "block.3", "x_t@step0", "x0_hat@step0",
                                                      "ae_latent", "image"]
    assert [str(s) for s in pipeline_sites(sana.transformer)] == ["block.0", "block.1", "block.2", "block.3"]
    assert parse_sites("image, block.2,all", sana) == [Site.block(i) for i in range(4)] + [Site("image")]
    assert parse_sites([Site.block(1), "block.0"], sana) == [Site.block(0), Site.block(1)]
    with pytest.raises(SiteError, match=r"'block\.9'.*block\.0, block\.1, block\.2, block\.3, x_t@step<k>, x0_hat@step<k>, ae_latent, image"):
        parse_sites("block.0,block.9", sana)
    with pytest.raises(SiteError, match="vision encoder"):
        parse_sites("vision", sana)
    ds = planted_store(n_samples=64, n_layers=3, n_tokens=4, n_channels=8, chunk_samples=64, seed=0)
    assert [str(s) for s in store_sites(ds, text=True)] == ["block.0", "block.1", "block.2", "ae_latent", "text"]
    assert find_site(ds, "block.1") == Site.block(1)
    with pytest.raises(SiteError, match=r"'block\.7' is not in the store; it has block\.0, block\.1, block\.2, ae_latent"):
        find_site(ds, "block.7")
    with pytest.raises(SiteError, match=r"layer\(s\) \[5\] not in the store"):
        store_sites(ds, layers=[0, 5])


def test_a_traced_read_equals_the_plain_call(sana):
    plain = sana(PROMPTS, generator=gens(), **SANA).images
    with trace(sana, "block.3,image", dtype=torch.float32) as t:
        traced = sana(PROMPTS, generator=gens(), **SANA).images
    assert torch.equal(plain, traced)
    np.testing.assert_array_equal(t.last(Site("image")), to_uint8(plain * 2 - 1))  # the pipeline's own pixels
    assert t[Site.block(3)].shape == (1, 2, 64, 16)
    assert no_hooks_left(sana)


def test_a_write_changes_exactly_the_chosen_tokens(sana):
    with trace(sana, "block.1", dtype=torch.float32) as plain:
        sana(PROMPTS, generator=gens(), **SANA)
    direction = torch.randn(16, generator=torch.Generator().manual_seed(1))
    tokens = np.zeros(64, bool)
    tokens[[3, 17, 40]] = True
    with trace(sana, "block.1", writes={"block.1": add_direction(direction, 2.0, tokens)}, dtype=torch.float32) as t:
        sana(PROMPTS, generator=gens(), **SANA)
    diff = (t.last("block.1") - plain.last("block.1")).abs().amax(-1)
    assert (diff[:, tokens] > 0).all() and (diff[:, ~tokens] == 0).all()
    torch.testing.assert_close(t.last("block.1")[:, tokens], plain.last("block.1")[:, tokens] + 2.0 * direction)
    with pytest.raises(SiteError, match="writes act on a block site"):
        trace(sana, writes={"image": lambda o: o})
    assert no_hooks_left(sana)


def test_stop_after_the_last_needed_block(sana):
    ran = []
    handle = sana.transformer.transformer_blocks[3].register_forward_hook(lambda *a: ran.append(1))
    try:
        with trace(sana, ["block.1"], writes={"block.2": lambda o: o}, dtype=torch.float32) as t:
            out = sana(PROMPTS, generator=gens(), **SANA)
    finally:
        handle.remove()
    assert "out" not in locals() or out is None
    assert ran == [] and t.fired == {1: 1, 2: 1} and t.last("block.1").shape == (2, 64, 16)
    assert no_hooks_left(sana)


def test_replay_equals_the_full_run(sana):
    with trace(sana, "block.2,image", dtype=torch.float32) as full:
        sana(PROMPTS, generator=gens(), **SANA)
    cached = full.last("block.2").to(sana.transformer.dtype)
    with trace(sana, "image", replay=(2, cached)) as again:
        sana(PROMPTS, generator=gens(), **SANA)
    np.testing.assert_array_equal(again.last("image"), full.last("image"))
    assert all(type(b).__name__ not in ("_Skip", "_Replay") for b in sana.transformer.transformer_blocks)  # restored
    with pytest.raises(SiteError, match="do not run when replaying"):
        trace(sana, "block.1", replay=(2, cached))
    assert no_hooks_left(sana)


def test_hooks_removed_after_an_exception_and_no_nesting(sana):
    def boom(*_):
        raise RuntimeError("boom inside the forward")

    handle = sana.transformer.transformer_blocks[2].register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"), \
                trace(sana, "all,ae_latent,image", writes={"block.0": lambda o: o}, replay=None):
            sana(PROMPTS, generator=gens(), **SANA)
    finally:
        handle.remove()
    assert no_hooks_left(sana)
    with pytest.raises(RuntimeError, match="do not nest"), trace(sana, "block.0", stop=False), trace(sana, "block.1"):
        pass
    assert no_hooks_left(sana)
    with trace(sana, "block.1") as again:  # the refused nesting left nothing behind
        sana(PROMPTS, generator=gens(), **SANA)
    assert again.last("block.1").shape == (2, 64, 16)


def test_fire_counts_are_checked(sana):
    with pytest.raises(RuntimeError, match=r"block\.1 fired 1 times, expected 2"), trace(sana, "block.1", calls=2, stop=False):
        sana(PROMPTS, generator=gens(), **SANA)
    with pytest.raises(RuntimeError, match=r"block\.3 fired 1 times, expected 2"), \
            trace(sana, writes={"block.3": lambda o: o}, calls=2, stop=False):
        sana(PROMPTS, generator=gens(), **SANA)
    assert no_hooks_left(sana)


def _by_wrapping_decode(pipe, call):
    """What the former capture did: replace `vae.decode` on the instance, record its input and output."""
    got, decode = {}, pipe.vae.decode

    def wrapped(z, *args, **kwargs):
        got["ae_latent"] = z.flatten(2).transpose(1, 2).detach().float()
        result = decode(z, *args, **kwargs)
        got["image"] = to_uint8(result[0] if isinstance(result, tuple) else result.sample)
        return result

    pipe.vae.decode = wrapped
    try:
        call()
    finally:
        del pipe.vae.decode
    return got


@pytest.mark.parametrize("make", ["sana", "pixart"])
def test_decoder_sites_equal_the_decode_call_bit_for_bit(sana, make):
    if make == "sana":
        pipe, kw = sana, SANA
    else:  # AutoencoderKL: the latent reaches the decoder through post_quant_conv
        pipe = tiny_pixart_pipeline(num_layers=2)
        kw = dict(num_inference_steps=2, guidance_scale=4.5, height=32, width=32, use_resolution_binning=False,
                  clean_caption=False, max_sequence_length=8, output_type="pt")
    want = _by_wrapping_decode(pipe, lambda: pipe(PROMPTS, generator=gens(), **kw))
    vision = tiny_vision_encoder()
    with trace(pipe, "ae_latent,image,vision", dtype=torch.float32, vision=vision) as t:
        out = pipe(PROMPTS, generator=gens(), **kw).images
    assert torch.equal(t.last("ae_latent"), want["ae_latent"])
    np.testing.assert_array_equal(t.last("image"), want["image"])
    np.testing.assert_array_equal(t.last("image"), to_uint8(out * 2 - 1))
    torch.testing.assert_close(t.last("vision"), vision(want["image"]).float(), rtol=0, atol=0)
    assert no_hooks_left(pipe)
