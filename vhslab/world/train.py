"""`vhslab world train`: seeded, resumable stages that build the embedded world.

Stages (each writes OUT/<stage>/metrics.json when done and is skipped on re-runs; long stages
checkpoint every few hundred steps and resume from there):
  autoencoder  DC-AE on world images; latent scale; verdict agreement of reconstructions
  decoder      the decoder fine-tuned on the frozen encoder's latents with latent noise
  teacher      Gemma2 text encoder + Sana DiT as a rectified flow with CFG dropout (EMA)
  refine       a second cosine cycle of the teacher from its EMA weights (warm restart)
  distill      one-step student (same architecture) regressed on the teacher's CFG samples
  vision       tiny CLIP, contrastive on images and captions
  llm          tiny Qwen2 language model on world text and verifier dialogues
  assemble     the SanaSprintPipeline, vision model and LLM saved with save_pretrained

On a GPU, vision and llm train in a second process on the CPU while the other stages run, and
the decoder in a third one (from the autoencoder stage's end until the distillation's quick score).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import vhslab.world.stage as stage
from vhslab.errors import InputError
from vhslab.world.generator import (
    GeneratorConfig,
    assemble_pipeline,
    tokenize,
)
from vhslab.world.llm_train import LLMTrainConfig, train_llm
from vhslab.world.scenes import training_pool
from vhslab.world.text import build_word_tokenizer
from vhslab.world.train_autoencoder import AutoencoderStages
from vhslab.world.train_flow import FlowStages
from vhslab.world.vision_train import VisionTrainConfig, train_vision

STAGES = ("autoencoder", "decoder", "teacher", "refine", "distill", "vision", "llm", "assemble")
SIDE_STAGES = ("vision", "llm")  # need nothing of the others: on a GPU they train beside them, on the CPU
BESIDE_AFTER_AUTOENCODER = "decoder"  # on a GPU it trains beside the teacher stages, on the CPU
DECODER_BESIDE_MIN_THREADS = 4  # free cores it needs for that (else it trains on the GPU, before the teacher)
CHECKPOINT_EVERY = 250
POOL_IMAGES = "pool_images.npy"


def _cached_images(path: Path) -> np.ndarray:
    """The pool's images cached for a process beside (never unpickled)."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise InputError(f"damaged cache {path} ({err}): remove it to start over") from err


class WorldTrainer(AutoencoderStages, FlowStages):
    """The stages of `vhslab world train` on one output folder: seeded, resumable, some trained beside the others."""

    def __init__(self, out: str | Path, cfg: GeneratorConfig | None = None, seed: int = 0,
                 device: str | None = None, progress: bool = True, log=print, vision_cfg=None, llm_cfg=None,
                 side: bool | None = None):
        """`vision_cfg` / `llm_cfg`: VisionTrainConfig / LLMTrainConfig (their defaults when None).
        `side`: train the SIDE_STAGES in a second process on the CPU while the others run (default:
        when the device is a GPU)."""
        self.out = Path(out)
        self.cfg = cfg or GeneratorConfig()
        self.vision_cfg, self.llm_cfg = vision_cfg, llm_cfg
        self.seed = seed
        self.device = stage.pick_device(device)
        if self.device.type == "cuda":  # TF32 matmuls and tuned convolutions (the gpu profile's speed)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self.progress = progress
        self.log = log
        self.side = self.device.type == "cuda" if side is None else side
        self.tokenizer = build_word_tokenizer()
        self._pool = None
        self._caption_tokens = None
        self._decoder_proc = None
        stage.check_config(self.out, self.cfg, seed, name="config.json", key="generator")

    # -- helpers -----------------------------------------------------------------------
    def _bar(self, total: int, desc: str):
        return stage.progress_bar(total, 0, desc, self.progress)

    def _fit(self, d: Path, desc: str, steps: int, base_lr: float, warmup: int, model, opt, loss_fn,
             gen: torch.Generator, ema=None, clip: float | None = 1.0, noise_gen=None) -> list[float]:
        """A generator stage's run of `stage.train_steps`: `loss_fn()` draws its batch from `gen`
        (and `noise_gen`, if any; each checkpoint keeps their states, like the EMA weights),
        cosine decay to 0."""
        state = {"gen": (gen.get_state, gen.set_state)}
        if noise_gen is not None:
            state["noise_gen"] = (noise_gen.get_state, noise_gen.set_state)
        after_step = None
        if ema is not None:
            state["ema"] = (ema.state_dict, ema.load_state_dict)

            def after_step():
                ema.update_parameters(model)

        def loss_at(step):
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.cfg.bf16):
                return loss_fn()

        loop = stage.LoopConfig(steps, base_lr, warmup, CHECKPOINT_EVERY)
        return stage.train_steps(d, model, opt, loop, loss_at, desc, self.progress, after_step=after_step,
                                 clip=clip, final_frac=0.0, state=state)[2]

    def pool(self) -> tuple[np.ndarray, list[str]]:
        """The training images and captions (rendered once per process; captions also saved)."""
        if self._pool is None and (self.out / POOL_IMAGES).exists():  # written for a process beside
            self._pool = _cached_images(self.out / POOL_IMAGES), self.captions()
        if self._pool is None:
            with self._bar(self.cfg.pool_size, "render pool") as bar:
                self._pool = training_pool(self.cfg.pool_size, self.seed, self.cfg.resolution, bar.update)
            path = self.out / "pool_captions.json"
            if not path.exists():
                path.write_text(json.dumps(self._pool[1]))
        return self._pool

    def captions(self) -> list[str]:
        """The pool's captions, without rendering the pool again in a later process."""
        path = self.out / "pool_captions.json"
        if self._pool is None and path.exists():
            return json.loads(path.read_text())
        return self.pool()[1]

    def caption_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The pool captions' token ids and masks on the device, tokenized once (not per batch)."""
        if self._caption_tokens is None:
            ids, mask = tokenize(self.tokenizer, self.captions(), self.cfg.max_sequence_length)
            self._caption_tokens = ids.to(self.device), mask.to(self.device)
        return self._caption_tokens

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, rows, cols) of the DiT's input: the autoencoder's latent grid."""
        return (self.cfg.latent_channels, self.cfg.latent_grid, self.cfg.latent_grid)

    def stage_dir(self, name: str) -> Path:
        """The folder of stage `name`, made if needed."""
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run(self, stages=STAGES) -> dict:
        """Run `stages` in STAGES order (finished ones skipped, side stages beside); their metrics by stage."""
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise InputError(f"unknown stage(s) {unknown}; stages: {STAGES}")
        metrics = {}
        side = self._start_side(stages)
        beside = []  # stages trained in a side process: their metrics are logged once it has finished
        try:
            for name in STAGES:
                if name == "assemble":  # it packs the side stages' models
                    self._join(side, SIDE_STAGES)
                if name not in stages or (side and name in SIDE_STAGES):
                    continue
                if name == BESIDE_AFTER_AUTOENCODER and self._start_decoder_beside():
                    beside.append(name)
                    continue
                metrics[name] = self._run_stage(name)
            self._join_decoder()
            self._join(side, SIDE_STAGES)
        finally:
            for proc in (side, self._decoder_proc):
                if proc and proc.is_alive():  # the main stages failed: stop it (its stages resume on a re-run)
                    proc.terminate()
        beside += [name for name in SIDE_STAGES if side and name in stages]
        for name in beside:
            metrics[name] = self._run_stage(name)  # finished beside: logs its metrics
        return {name: metrics[name] for name in STAGES if name in metrics}

    def _run_stage(self, name: str) -> dict:
        start = time.time()
        done = stage.finished_metrics(self.stage_dir(name))
        if done is None:
            torch.manual_seed(self.seed)
            done = getattr(self, f"stage_{name}")(self.stage_dir(name))
            done["seconds"] = round(time.time() - start, 1)
            stage.finish(self.stage_dir(name), done)
        self.log(f"[{name}] " + json.dumps(done))
        return done

    def _start_side(self, stages):
        """The process training the unfinished SIDE_STAGES on the CPU, or None."""
        todo = [s for s in SIDE_STAGES if s in stages and stage.finished_metrics(self.out / s) is None]
        if not (self.side and todo):
            return None
        threads = _side_threads()[0]
        self.log(f"{', '.join(todo)}: training beside the other stages, on the CPU ({threads} threads)")
        return self._spawn(todo, threads)

    def _spawn(self, stages: list[str], threads: int):
        import multiprocessing

        proc = multiprocessing.get_context("spawn").Process(
            target=_train_side, args=(self.out, self.seed, self.cfg, stages, threads, self.vision_cfg, self.llm_cfg),
            name=f"vhslab-world-{'-'.join(stages)}")
        proc.start()
        return proc

    def _start_decoder_beside(self) -> bool:
        """Start the unfinished decoder stage in a process on the CPU (when training beside): it
        needs the pool and its latents, which this process writes first; `load_autoencoder()`
        waits for it. False where it runs here instead."""
        name = BESIDE_AFTER_AUTOENCODER
        threads = _side_threads()[1]
        done = stage.finished_metrics(self.out / name) is not None
        if not self.side or threads < DECODER_BESIDE_MIN_THREADS or done:
            return False
        self.latents()
        path = self.out / POOL_IMAGES
        if not path.exists():
            np.save(self.out / (POOL_IMAGES + ".tmp.npy"), self.pool()[0])
            os.replace(self.out / (POOL_IMAGES + ".tmp.npy"), path)
        self.log(f"{name}: training beside the teacher stages, on the CPU ({threads} threads)")
        self._decoder_proc = self._spawn([name], threads)
        return True

    def _join_decoder(self) -> None:
        proc, self._decoder_proc = self._decoder_proc, None
        self._join(proc, [BESIDE_AFTER_AUTOENCODER])

    @staticmethod
    def _join(proc, stages) -> None:
        """Wait for the process training `stages` beside the others (None: none); raise if it failed."""
        if proc is None:
            return
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"the process training {', '.join(stages)} beside the others failed (exit code "
                               f"{proc.exitcode}; its traceback is above); run the same command again to resume")

    # -- vision encoder and LLM (vhslab.world.vision_train / llm_train) ----------------
    def stage_vision(self, d: Path) -> dict:
        """Train the world's tiny CLIP (`vision_train.train_vision`)."""
        return train_vision(d / "model", self.vision_cfg or VisionTrainConfig(), seed=self.seed,
                            device=str(self.device), progress=self.progress)

    def stage_llm(self, d: Path) -> dict:
        """Train the world's tiny LLM (`llm_train.train_llm`)."""
        return train_llm(d / "model", self.llm_cfg or LLMTrainConfig(), seed=self.seed,
                         device=str(self.device), progress=self.progress)

    # -- assembly ----------------------------------------------------------------------
    def stage_assemble(self, d: Path) -> dict:
        """Save the SanaSprintPipeline, vision model, LLM and world.json into `d`; its size."""
        import shutil

        from diffusers import SanaTransformer2DModel

        text, _ = self.load_teacher()
        student = SanaTransformer2DModel.from_pretrained(self.out / "distill" / "transformer", local_files_only=True)
        pipe = assemble_pipeline(self.tokenizer, text.cpu(), self.load_autoencoder().cpu(), student)
        pipe.save_pretrained(d / "pipeline")
        for name in ("vision", "llm"):
            src = self.out / name / "model"
            if src.exists():
                shutil.copytree(src, d / name, dirs_exist_ok=True)
        (d / "world.json").write_text(json.dumps({
            "seed": self.seed, "default_guidance": self.cfg.default_guidance,
            "max_sequence_length": self.cfg.max_sequence_length, "resolution": self.cfg.resolution,
        }, indent=1))
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        return {"megabytes": round(size / 2**20, 2)}


def _side_threads() -> tuple[int, int]:
    """CPU threads of the vision/LLM process and of the decoder process: up to 8, then what is
    left, two cores kept for the main process (which drives the GPU)."""
    cores = os.cpu_count() or 2
    first = max(1, min(8, cores - 2))
    return first, max(1, min(8, cores - 2 - first))


def _train_side(out, seed, cfg, stages, threads, vision_cfg, llm_cfg) -> None:
    """The side process: `stages` on the CPU, quietly (the main process logs their metrics)."""
    torch.set_num_threads(threads)
    WorldTrainer(out, cfg, seed, "cpu", False, lambda *a: None, vision_cfg, llm_cfg, side=False).run(stages)


def profile_configs(name: str) -> dict:
    """Generator, vision and LLM configs of a training profile: `default` (2 CPU cores), `gpu`
    (one H100/H200) or `tiny` (seconds, for smoke tests)."""
    if name == "tiny":
        return {"cfg": GeneratorConfig.tiny(), "vision_cfg": VisionTrainConfig.tiny(), "llm_cfg": LLMTrainConfig.tiny()}
    if name in ("default", "gpu"):
        cfg = GeneratorConfig.gpu() if name == "gpu" else GeneratorConfig()
        return {"cfg": cfg, "vision_cfg": VisionTrainConfig(), "llm_cfg": LLMTrainConfig()}
    raise InputError(f"unknown profile {name!r}; profiles: default, gpu, tiny")


def train_world(out, seed: int = 0, cfg: GeneratorConfig | None = None, stages=STAGES, device=None,
                progress: bool = True, log=print, threads: int | None = None, vision_cfg=None, llm_cfg=None,
                side: bool | None = None) -> dict:
    """Run the stages; `threads` defaults to every core (use 1 on a machine that is busy); `side`:
    see WorldTrainer."""
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    return WorldTrainer(out, cfg, seed, device, progress, log, vision_cfg, llm_cfg, side).run(stages)
