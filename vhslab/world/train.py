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

import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import vhslab.statefile as statefile
import vhslab.world.stage as stage
from vhslab.errors import InputError, MissingError
from vhslab.pixels import decoded_to_uint8
from vhslab.shapes.evaluate import ShapesEvaluator, summarize
from vhslab.shapes.prompts import TAGS
from vhslab.shapes.scenes import render, sample_scene
from vhslab.shapes.suites import load_suite
from vhslab.shapes.worldcheck import perturbations
from vhslab.world.generator import (
    GeneratorConfig,
    assemble_pipeline,
    build_autoencoder,
    build_text_encoder,
    build_transformer,
    compile_blocks,
    encode_text,
    encode_tokens,
    flow_loss,
    logit_normal,
    one_step,
    teacher_sample,
    tokenize,
)
from vhslab.world.llm_train import LLMTrainConfig, train_llm
from vhslab.world.scenes import training_pool
from vhslab.world.text import build_word_tokenizer
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


def _to_unit(images: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1


def _loss_summary(losses: list[float]) -> dict:
    """What every generator stage records of its loss curve: the first 20 and last 50 steps' means."""
    return {"loss_first": float(np.mean(losses[:20])), "loss_last": float(np.mean(losses[-50:]))}


class WorldTrainer:
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
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run(self, stages=STAGES) -> dict:
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

    # -- autoencoder -------------------------------------------------------------------
    def _latest(self, stages: tuple[str, ...], name: str) -> Path:
        """The first of `stages` whose folder holds the saved `name` (later stages first)."""
        for st in stages:
            if (self.out / st / name).exists():
                return self.out / st / name
        raise MissingError(f"no stage of {stages} has saved {name!r} in {self.out}; run those stages first")

    def load_autoencoder(self, stage_name: str | None = None):
        """The autoencoder of `stage_name`, or the latest one (fine-tuned decoder if present; when
        the decoder trains beside, after waiting for it)."""
        from diffusers import AutoencoderDC

        if stage_name is None:
            self._join_decoder()
        path = self._latest((stage_name,) if stage_name else ("decoder", "autoencoder"), "model")
        return AutoencoderDC.from_pretrained(path, local_files_only=True).to(self.device).eval()

    def stage_autoencoder(self, d: Path) -> dict:
        cfg = self.cfg
        images, _ = self.pool()
        vae = build_autoencoder(cfg).to(self.device)
        opt = torch.optim.AdamW(vae.parameters(), lr=cfg.ae_lr, weight_decay=0.0)
        gen = torch.Generator().manual_seed(self.seed)

        def loss_fn():
            idx = torch.randint(len(images), (cfg.ae_batch,), generator=gen).numpy()
            x = _to_unit(images[idx], self.device)
            recon = vae.decode(vae.encode(x).latent).sample
            return F.l1_loss(recon, x) + F.mse_loss(recon, x)

        losses = self._fit(d, "autoencoder", cfg.ae_steps, cfg.ae_lr, 50, vae, opt, loss_fn, gen, clip=None)
        vae.eval()
        with torch.no_grad():
            sample = _to_unit(images[: min(2048, len(images))], self.device)
            lat = torch.cat([vae.encode(b).latent for b in sample.split(256)])
        scale = float(1.0 / lat.std())
        vae.register_to_config(scaling_factor=scale)
        vae.save_pretrained(d / "model")
        agreement = self.reconstruction_agreement(vae)
        return {**_loss_summary(losses), "scaling_factor": scale, "verdict_agreement": agreement}

    @torch.no_grad()
    def reconstruction_agreement(self, vae, n: int = 600) -> float:
        """Share of evaluation scenes whose evaluator verdict is the same on the reconstruction."""
        rng = np.random.default_rng(self.seed + 1)
        suite = load_suite("geneval-shapes")
        ev = ShapesEvaluator()
        specs, imgs = [], []
        for i in range(n):
            spec = suite[int(rng.integers(len(suite)))]
            scene = sample_scene(spec, rng)
            if i % 2:  # half of them wrong scenes, so that agreement is not all "correct"
                scene = next(iter(perturbations(spec, scene, rng).values()))
            specs.append(spec)
            imgs.append(render(scene, self.cfg.resolution))
        x = _to_unit(np.stack(imgs), self.device)
        recon = torch.cat([vae.decode(vae.encode(b).latent).sample for b in x.split(128)])
        same = [ev.evaluate(a, s).correct == ev.evaluate(b, s).correct
                for a, b, s in zip(imgs, decoded_to_uint8(recon), specs, strict=True)]
        return float(np.mean(same))

    @torch.no_grad()
    def latents(self) -> torch.Tensor:
        """The pool's latents in the DiT's units (scaled), cached on disk."""
        path = self.out / "autoencoder" / "pool_latents.safetensors"
        if path.exists():
            return statefile.load(path, "cache")
        vae = self.load_autoencoder("autoencoder")
        images, _ = self.pool()
        chunks = []
        with self._bar(len(images), "encode pool") as bar:
            for i in range(0, len(images), 256):
                chunks.append(vae.encode(_to_unit(images[i:i + 256], self.device)).latent.cpu())
                bar.update(len(chunks[-1]))
        lat = torch.cat(chunks) * vae.config.scaling_factor
        statefile.save(path, lat)
        return lat

    def stage_decoder(self, d: Path) -> dict:
        """Fine-tune the decoder on the frozen encoder's latents, adding noise of a random std in
        [0, decoder_noise] to them, so that slightly-off generated latents still decode to clean
        shapes; the latent space (and so the DiT's task) is unchanged."""
        cfg = self.cfg
        images, _ = self.pool()
        lat = self.latents()
        vae = self.load_autoencoder("autoencoder")
        vae.requires_grad_(False)
        vae.decoder.requires_grad_(True)
        scale = vae.config.scaling_factor
        opt = torch.optim.AdamW(vae.decoder.parameters(), lr=cfg.decoder_lr, weight_decay=0.0)
        gen = torch.Generator().manual_seed(self.seed + 6)

        def loss_fn():
            idx = torch.randint(len(images), (cfg.decoder_batch,), generator=gen)
            x = _to_unit(images[idx.numpy()], self.device)
            z = lat[idx]
            sigma = cfg.decoder_noise * torch.rand((len(z), 1, 1, 1), generator=gen)
            z = (z + sigma * torch.randn(z.shape, generator=gen)).to(self.device)
            recon = vae.decode(z / scale).sample
            return F.l1_loss(recon, x) + F.mse_loss(recon, x)

        losses = self._fit(d, "decoder", cfg.decoder_steps, cfg.decoder_lr, 50, vae.decoder, opt, loss_fn, gen,
                           clip=None)
        vae.eval()
        vae.save_pretrained(d / "model")
        return {**_loss_summary(losses), "verdict_agreement": self.reconstruction_agreement(vae)}

    # -- teacher -----------------------------------------------------------------------
    def stage_teacher(self, d: Path) -> dict:
        cfg = self.cfg
        text = build_text_encoder(cfg, self.tokenizer).to(self.device)
        dit = build_transformer(cfg).to(self.device)
        return self._train_flow(d, "teacher", text, dit, cfg.teacher_steps, cfg.teacher_lr, self.seed + 2)

    def stage_refine(self, d: Path) -> dict:
        text, dit = self.load_teacher("teacher")
        return self._train_flow(d, "refine", text, dit, self.cfg.refine_steps, self.cfg.refine_lr, self.seed + 7)

    def _train_flow(self, d: Path, desc: str, text, dit, steps: int, lr: float, seed: int) -> dict:
        """Train text encoder + DiT jointly as a rectified flow (EMA weights saved to `d`)."""
        cfg = self.cfg
        lat = self.latents().to(self.device)
        ids, masks = self.caption_tokens()
        null_ids, null_mask = (t.to(self.device) for t in tokenize(self.tokenizer, [""], cfg.max_sequence_length))
        model = torch.nn.ModuleDict({"text": text.requires_grad_(True), "dit": dit.requires_grad_(True)})
        ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.998))
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        if cfg.compile_blocks:
            compile_blocks(dit)  # after the EMA's copy: that one only averages
        gen = torch.Generator().manual_seed(seed)
        noise_gen = _noise_generator(self.device, seed + 100)
        guidance = torch.full((cfg.teacher_batch,), 100.0, device=self.device)  # teacher: guidance 1

        def loss_fn():
            idx = torch.randint(len(lat), (cfg.teacher_batch,), generator=gen)
            drop = torch.rand(cfg.teacher_batch, generator=gen) < cfg.cfg_dropout
            idx, keep = idx.to(self.device), (~drop).to(self.device).view(-1, 1)
            x0 = lat[idx]
            noise = torch.randn(x0.shape, generator=gen if noise_gen is None else noise_gen, device=self.device)
            tau = logit_normal(len(x0), gen, self.device)
            return flow_loss(text, dit, x0, noise, tau, torch.where(keep, ids[idx], null_ids),
                             torch.where(keep, masks[idx], null_mask), guidance)

        losses = self._fit(d, desc, steps, lr, 100, model, opt, loss_fn, gen, ema, noise_gen=noise_gen)
        ema.module.text.save_pretrained(d / "text_encoder")
        ema.module.dit.save_pretrained(d / "transformer")
        text, dit = self.load_teacher(d.name)
        null = encode_text(self.tokenizer, text, [""], cfg.max_sequence_length, self.device)

        def sample(noise, embeds, mask):
            return teacher_sample(dit, noise, embeds, mask, *null, cfg.default_guidance, cfg.sample_steps)

        # decoded by the autoencoder stage's model: the fine-tuned decoder may still be training beside
        score = self.quick_score(text, sample, self.load_autoencoder("autoencoder"))
        return {**_loss_summary(losses), f"quick_score_{cfg.sample_steps}_steps": score}

    def load_teacher(self, stage_name: str | None = None):
        """Text encoder and DiT of `stage_name`, or of the latest teacher stage (refine, teacher)."""
        from diffusers import SanaTransformer2DModel
        from transformers import Gemma2Model

        d = self._latest((stage_name,) if stage_name else ("refine", "teacher"), "transformer").parent
        text = Gemma2Model.from_pretrained(d / "text_encoder", local_files_only=True).to(self.device).eval()
        dit = SanaTransformer2DModel.from_pretrained(d / "transformer", local_files_only=True).to(self.device).eval()
        return text, dit

    # -- distillation ------------------------------------------------------------------
    @torch.no_grad()
    def teacher_pairs(self, d: Path) -> dict:
        """(noise, caption index, guidance, teacher sample) pairs, generated once and cached."""
        path = d / "pairs.safetensors"
        if path.exists():
            return statefile.load(path, "cache")
        cfg = self.cfg
        text, dit = self.load_teacher()
        ids, masks = self.caption_tokens()
        gen = torch.Generator().manual_seed(self.seed + 3)
        n = cfg.distill_pairs
        noise = torch.randn((n, *self.latent_shape), generator=gen)
        idx = torch.randint(len(ids), (n,), generator=gen)
        lo, hi = cfg.guidance_range
        w = lo + (hi - lo) * torch.rand(n, generator=gen)
        null_e, null_m = encode_text(self.tokenizer, text, [""], cfg.max_sequence_length, self.device)
        x0 = torch.empty_like(noise)
        with self._bar(n, "teacher pairs") as bar:
            for i in range(0, n, cfg.pairs_batch):
                sl = slice(i, i + cfg.pairs_batch)
                rows = idx[sl].to(self.device)
                e, m = encode_tokens(text, ids[rows], masks[rows])
                x0[sl] = teacher_sample(dit, noise[sl].to(self.device), e, m, null_e, null_m,
                                        w[sl].to(self.device), cfg.sample_steps).cpu()
                bar.update(len(x0[sl]))
        pairs = {"noise": noise, "idx": idx, "w": w, "x0": x0}
        statefile.save(path, pairs)
        return pairs

    def stage_distill(self, d: Path) -> dict:
        cfg = self.cfg
        pairs = {k: v.to(self.device) for k, v in self.teacher_pairs(d).items()}
        ids, masks = self.caption_tokens()
        text, teacher = self.load_teacher()
        text.requires_grad_(False)
        student = copy.deepcopy(teacher).train().requires_grad_(True)
        ema = torch.optim.swa_utils.AveragedModel(student, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.995))
        opt = torch.optim.AdamW(student.parameters(), lr=cfg.distill_lr, weight_decay=0.0)
        if cfg.compile_blocks:
            compile_blocks(student)
        gen = torch.Generator().manual_seed(self.seed + 4)

        def loss_fn():
            sel = torch.randint(len(pairs["x0"]), (cfg.distill_batch,), generator=gen).to(self.device)
            with torch.no_grad():
                rows = pairs["idx"][sel]
                e, m = encode_tokens(text, ids[rows], masks[rows])
            x0 = one_step(student, pairs["noise"][sel], e, m, pairs["w"][sel])
            return F.mse_loss(x0, pairs["x0"][sel])

        losses = self._fit(d, "distill", cfg.distill_steps, cfg.distill_lr, 50, student, opt, loss_fn, gen, ema)
        ema.module.save_pretrained(d / "transformer")
        student = ema.module.eval()

        def sample(noise, embeds, mask):
            return one_step(student, noise, embeds, mask, cfg.default_guidance)

        score = self.quick_score(text, sample, self.load_autoencoder())
        return {**_loss_summary(losses), "pairs": len(pairs["x0"]), "quick_score_one_step": score}

    @torch.no_grad()
    def quick_score(self, text, sample, vae, per_tag: int = 40) -> dict:
        """GenEval-style overall and per-tag score of one sample for `per_tag` evaluation prompts
        of each tag (a quick look during training; `vhslab world score` is the full measure)."""
        cfg = self.cfg
        suite = load_suite("geneval-shapes")
        specs = [s for tag in TAGS for s in [x for x in suite if x.tag == tag][:per_tag]]
        gen = torch.Generator().manual_seed(self.seed + 5)
        ev, correct = ShapesEvaluator(), []
        for i in range(0, len(specs), 64):
            batch = specs[i:i + 64]
            embeds, mask = encode_text(self.tokenizer, text, [s.prompt for s in batch], cfg.max_sequence_length,
                                       self.device)
            noise = torch.randn((len(batch), *self.latent_shape), generator=gen).to(self.device)
            x0 = sample(noise, embeds, mask)
            images = decoded_to_uint8(vae.decode(x0 / vae.config.scaling_factor).sample)
            correct += [ev.evaluate(img, s).correct for img, s in zip(images, batch, strict=True)]
        summary = summarize([s.tag for s in specs], correct)
        return {"overall": summary["overall"], **summary["per_tag"]}

    # -- vision encoder and LLM (vhslab.world.vision_train / llm_train) ----------------
    def stage_vision(self, d: Path) -> dict:
        return train_vision(d / "model", self.vision_cfg or VisionTrainConfig(), seed=self.seed,
                            device=str(self.device), progress=self.progress)

    def stage_llm(self, d: Path) -> dict:
        return train_llm(d / "model", self.llm_cfg or LLMTrainConfig(), seed=self.seed,
                         device=str(self.device), progress=self.progress)

    # -- assembly ----------------------------------------------------------------------
    def stage_assemble(self, d: Path) -> dict:
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


def _noise_generator(device: torch.device, seed: int) -> torch.Generator | None:
    """The flow stages' noise generator on a GPU: drawing a batch's noise on the CPU (2M normals at
    batch 2,048, ~15 ms) would add a fifth to a compiled GPU step. None on the CPU, where the batch
    generator draws it."""
    return torch.Generator(device).manual_seed(seed) if device.type == "cuda" else None


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
