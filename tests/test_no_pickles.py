"""No code runs from a file: a pickle whose unpickling would create a marker file is planted at every
place vhslab reads a file it could be handed (resume states, caches, verifier and release folders,
`--llm` folders, stores), and the real reader is called. It may refuse with a clear error; it must
never run the payload."""

import json
import pickle
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.tiny_models import tiny_llm
from safetensors.torch import save_file
from typer.testing import CliRunner

from vhslab import statefile
from vhslab.cli.main import app
from vhslab.probes import open_store
from vhslab.testing import planted_store
from vhslab.verifier.checkpoint import CHECKPOINT, OLD_CHECKPOINT
from vhslab.verifier.model import CONFIG, WEIGHTS, LatentVerifier, VerifierError, from_release
from vhslab.verifier.train import VerifierTrainConfig, train_verifier
from vhslab.world import stage
from vhslab.world.text import build_word_tokenizer


class Touch:
    """Unpickling this creates `marker` (and nothing else)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "the-payload-ran"


def plant(path: Path, marker: Path, how: str = "torch") -> Path:
    """A payload at `path`: torch.save's zip (what the old checkpoints were) or a bare pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": {"weight": Touch(marker)}, "step": 1, "identity": None}
    if how == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


def assert_never_runs(marker: Path, call, error=ValueError, match: str | None = None):
    """`call()` refuses (raises `error`, its message matching `match`) without running the payload."""
    with pytest.raises(error, match=match):
        call()
    assert not marker.exists(), "the planted pickle ran"


def test_the_payload_is_live(tmp_path, marker):
    """The control: a reader that unpickles runs it (so the tests below can fail)."""
    for how in ("torch", "pickle"):
        path = plant(tmp_path / f"p.{how}", marker, how)
        if how == "torch":  # torch.save's zip: its data.pkl is what an unsafe torch.load unpickles
            with zipfile.ZipFile(path) as z:
                pickle.loads(z.read(next(n for n in z.namelist() if n.endswith("data.pkl"))))
        else:
            pickle.loads(path.read_bytes())
        assert marker.exists()
        marker.unlink()


def test_statefile_refuses_pickles_and_damage_naming_the_file(tmp_path, marker):
    for how in ("torch", "pickle"):
        path = plant(tmp_path / f"{how}.safetensors", marker, how)
        assert_never_runs(marker, lambda p=path: statefile.load(p), statefile.StateFileError, f"{path.name} is a pickle")
    good = tmp_path / "state.safetensors"
    statefile.save(good, {"step": 3, "w": torch.ones(2)})
    torn = tmp_path / "torn.safetensors"
    torn.write_bytes(good.read_bytes()[:-3])  # a torn write
    assert_never_runs(marker, lambda: statefile.load(torn), statefile.StateFileError, "damaged checkpoint .*torn.*remove it")


def planted(n=128):
    return planted_store(n_samples=n, n_layers=2, n_tokens=4, n_channels=16, signal_layer=1, strength=1.5,
                         chunk_samples=32, seed=3).load()


@pytest.mark.parametrize("name", [CHECKPOINT, OLD_CHECKPOINT, CHECKPOINT + ".refit", "checkpoint.pt.refit"])
@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_verifier_training_resume_checkpoints(tmp_path, marker, name, how):
    plant(tmp_path / name, marker, how)
    cfg = VerifierTrainConfig(steps=2, batch_size=16, eval_every=2, align_steps=0, refit=True)
    assert_never_runs(marker, lambda: train_verifier(planted(), "block.1", tiny_llm(), build_word_tokenizer(), cfg,
                                              progress=False, checkpoint=tmp_path / CHECKPOINT),
               match=rf"{name}.*(pickle|damaged)")


@pytest.fixture
def llm_folder(tmp_path):
    folder = tmp_path / "llm"
    tiny_llm().save_pretrained(folder)
    build_word_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "train.zarr"
    planted().to_zarr(path, consolidated=False)
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_verifier_train_refuses_an_old_pickle_checkpoint(tmp_path, marker, llm_folder, store):
    from vhslab.outputs import Output, write_manifest
    from vhslab.verifier.model import VERIFIER_KIND

    out = tmp_path / "v"
    out.mkdir()
    write_manifest(Output(out, VERIFIER_KIND, "--out", folder=True, resumable=True), complete=False)  # a stopped run
    plant(out / OLD_CHECKPOINT, marker)  # ... with an earlier version's checkpoint left in it
    r = invoke("verifier", "train", "--data", store, "--llm", llm_folder, "--site", "block.1", "--steps", 2,
               "--align-steps", 0, "--grid", 0, "--out", out, "--no-progress")
    assert r.exit_code == 2 and "error:" in r.output and OLD_CHECKPOINT in r.output, r.output
    assert not marker.exists() and not (out / CONFIG).exists()


def test_an_llm_folder_with_a_pickle_instead_of_safetensors(tmp_path, marker, llm_folder, store):
    next(llm_folder.glob("*.safetensors")).unlink()
    plant(llm_folder / "pytorch_model.bin", marker)
    r = invoke("verifier", "train", "--data", store, "--llm", llm_folder, "--site", "block.1", "--steps", 2,
               "--align-steps", 0, "--grid", 0, "--out", tmp_path / "v", "--no-progress")
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert r.exit_code == 2 and len(errors) == 1 and "llm" in errors[0] and not marker.exists(), r.output


def test_a_verifier_folder_with_pickles_in_it(tmp_path, marker):
    import vhslab

    saved = LatentVerifier.create(tiny_llm(), build_word_tokenizer(), "block.1", 16, mean=torch.zeros(16),
                                  var=torch.ones(16)).save_pretrained(tmp_path / "v")
    weights = saved / WEIGHTS  # connector and statistics
    good = weights.read_bytes()
    plant(weights, marker)
    assert_never_runs(marker, lambda: vhslab.load_verifier(saved), VerifierError, f"{WEIGHTS} is not a safetensors file")
    weights.write_bytes(good)
    next((saved / "llm").glob("*.safetensors")).unlink()
    plant(saved / "llm" / "pytorch_model.bin", marker)
    assert_never_runs(marker, lambda: vhslab.load_verifier(saved), VerifierError, "not a complete saved LatentVerifier")


def test_release_files_are_read_without_unpickling(tmp_path, marker):
    llm, tok = tiny_llm(seed=3), build_word_tokenizer()
    release = tmp_path / "release"
    release.mkdir()
    raw = {**llm.config.to_dict(), "model_type": "llava_qwen", "mm_hidden_size": 16, "mm_projector_type": "mlp2x_gelu"}
    (release / "config.json").write_text(json.dumps(raw))
    state = {k: v.contiguous() for k, v in llm.state_dict().items() if k != "lm_head.weight"}
    for i, layer in ((0, torch.nn.Linear(16, 32)), (2, torch.nn.Linear(32, 32))):
        state[f"model.mm_projector.{i}.weight"], state[f"model.mm_projector.{i}.bias"] = layer.weight.data, layer.bias.data
    save_file(state, release / "model.safetensors")
    tok.save_pretrained(release)
    for name in ("block_7_mean_bf16.pt", "block_7_variance_bf16.pt"):
        for kind, value in (("mean", torch.zeros(1, 16)), ("variance", torch.ones(1, 16))):
            torch.save(value.bfloat16(), release / f"block_7_{kind}_bf16.pt")
        assert from_release(release).config.site == "block.7"  # the honest files load
        plant(release / name, marker)
        assert_never_runs(marker, lambda: from_release(release), pickle.UnpicklingError, "Weights only load failed")
    plant(release / "model.safetensors", marker)
    assert_never_runs(marker, lambda: from_release(release), Exception)


def test_a_store_with_pickles_in_its_attributes_and_codecs(marker, store):
    meta = json.loads((store / "zarr.json").read_text())
    payload = pickle.dumps(Touch(marker))
    meta["attributes"]["note"] = payload.decode("latin-1")  # a pickle's bytes as an attribute: only ever a string
    (store / "zarr.json").write_text(json.dumps(meta))
    ds = open_store(store)
    assert ds.attrs["note"].encode("latin-1") == payload and not marker.exists()
    caption = json.loads((store / "caption" / "zarr.json").read_text())
    caption["codecs"] = [{"name": "numcodecs.pickle", "configuration": {"protocol": 5}}]
    (store / "caption" / "zarr.json").write_text(json.dumps(caption))
    for chunk in (store / "caption" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(pickle.dumps(np.array([Touch(marker)] * 32, dtype=object)))
    assert_never_runs(marker, lambda: open_store(store).load(), Exception)


WORLD_STAGES = ("autoencoder", "decoder", "teacher", "refine", "distill", "vision", "llm")


@pytest.mark.slow  # >= 15 s on 2 cores: the full suite (CI) runs it
def test_every_world_stage_checkpoint_and_cache(tmp_path, marker):
    """Each stage in turn: a pickle at its checkpoint (new and old name) and at the caches it reads is
    refused before it trains; then the stage trains for real, for the next one to build on."""
    from vhslab.world.generator import GeneratorConfig
    from vhslab.world.llm_train import LLMTrainConfig
    from vhslab.world.train import POOL_IMAGES, train_world
    from vhslab.world.vision_train import VisionTrainConfig

    out = tmp_path / "world"
    cfg = replace(GeneratorConfig.tiny(), pool_size=32, ae_steps=2, decoder_steps=2, teacher_steps=2, refine_steps=2,
                  distill_steps=2, distill_pairs=4)
    small = dict(vision_cfg=replace(VisionTrainConfig.tiny(), steps=2), llm_cfg=replace(LLMTrainConfig.tiny(), steps=2))
    run = lambda name: train_world(out, cfg=cfg, stages=(name,), progress=False, log=lambda *a: None,  # noqa: E731
                                   threads=1, side=False, **small)
    latents = out / "autoencoder" / "pool_latents.safetensors"
    reads = {"autoencoder": [out / POOL_IMAGES], "decoder": [latents], "teacher": [latents],
             "distill": [out / "distill" / "pairs.safetensors"]}
    for name in WORLD_STAGES:
        folder = out / name / "model" if name in ("vision", "llm") else out / name
        for path in [folder / stage.CHECKPOINT, folder / stage.OLD_CHECKPOINT, *reads.get(name, [])]:
            kept = path.read_bytes() if path.exists() else None
            if path.suffix == ".npy":
                np.save(path, np.array([Touch(marker)], dtype=object), allow_pickle=True)
            else:
                plant(path, marker, "pickle" if name == "decoder" else "torch")
            assert_never_runs(marker, lambda n=name: run(n), ValueError, rf"{path.name}.*(pickle|[Oo]bject arrays)")
            path.unlink()
            if kept is not None:
                path.write_bytes(kept)
        assert run(name)[name]  # trains (and writes the caches) for real
    shutil.rmtree(out / "teacher")  # a damaged (torn) cache is refused with the fix named
    latents.write_bytes(latents.read_bytes()[:-5])
    assert_never_runs(marker, lambda: run("teacher"), statefile.StateFileError, "damaged cache .*remove it to start over")
