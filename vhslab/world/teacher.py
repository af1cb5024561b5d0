"""The world's multi-step generator: the flow-matching teacher, shipped as a diffusers `SanaPipeline`
with a `FlowMatchEulerDiscreteScheduler` (`load_world().teacher`), and `vhslab world teacher`, the
seeded CPU recipe that trains it.

The world's original teacher was trained on an H100 and not shipped; the student was distilled
from it starting from its weights. The recipe here starts from the shipped student's DiT, converted
to a guidance-free Sana DiT (see `teacher_transformer_from`), and trains it as a rectified flow on
the world's scenes with the shipped text encoder and autoencoder frozen: the student is untouched.

SanaPipeline calls the DiT with `timestep = t * timestep_scale`, t in [0, 1000] from the scheduler;
the world's DiTs take the flow time tau = t / 1000, so the teacher's config has timestep_scale 0.001.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import vhslab.world.stage as stage
from vhslab.errors import InputError
from vhslab.pixels import from_uint8
from vhslab.world.generator import GUIDANCE_EMBEDS_SCALE, logit_normal, tokenize
from vhslab.world.scenes import training_pool

TEACHER_STEPS = 8  # the teacher's default Euler steps (`World.teacher_gen_config`)


@dataclass
class TeacherConfig:
    """The teacher recipe: steps, batch, learning rate, pool of rendered scenes, EMA and CFG dropout."""

    steps: int = 1000
    batch: int = 48
    lr: float = 3e-4
    warmup: int = 50
    pool_size: int = 8000
    cfg_dropout: float = 0.1
    ema: float = 0.995
    checkpoint_every: int = 250

    @classmethod
    def tiny(cls) -> TeacherConfig:
        """Seconds-long settings for tests."""
        return cls(steps=4, batch=4, pool_size=32, warmup=1, checkpoint_every=2)

    def to_dict(self) -> dict:
        """The config as plain JSON data."""
        return asdict(self)


@torch.no_grad()
def teacher_transformer_from(student: Any, guidance: float = 1.0):
    """A guidance-free `SanaTransformer2DModel` equal to `student` at guidance `guidance`.

    The student's time embedding adds `guidance_embedder(guidance * 100)` to the timestep
    embedding; at a fixed guidance that is a constant, folded into the timestep embedder's last
    bias, so the converted DiT's velocity equals the student's (checked by the tests). Its
    timestep_scale is 1/1000: SanaPipeline passes the scheduler's t in [0, 1000]."""
    from diffusers import SanaTransformer2DModel

    cfg = dict(student.config)
    if not cfg.get("guidance_embeds"):
        raise InputError("teacher_transformer_from expects a DiT with guidance embeddings (the world's student)")
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg.update(guidance_embeds=False, timestep_scale=0.001)
    teacher = SanaTransformer2DModel(**cfg)
    src = student.state_dict()
    emb = student.time_embed
    g = torch.full((1,), guidance * GUIDANCE_EMBEDS_SCALE, dtype=torch.float32)
    const = emb.guidance_embedder(emb.guidance_condition_proj(g).to(student.dtype))[0]
    out = {}
    for name, value in src.items():
        if name.startswith("time_embed.guidance"):
            continue
        if name.startswith("time_embed.timestep_embedder."):
            name = name.replace("time_embed.", "time_embed.emb.", 1)
        out[name] = value.clone()
    out["time_embed.emb.timestep_embedder.linear_2.bias"] += const
    missing, unexpected = teacher.load_state_dict(out, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"teacher conversion: missing {missing}, unexpected {unexpected}")
    return teacher.eval()


def assemble_teacher(tokenizer, text_encoder, vae, transformer):
    """A `SanaPipeline` of the parts with diffusers' flow-matching Euler scheduler (shift 1: the
    world's flow times are uniform in tau)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SanaPipeline

    pipe = SanaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def teacher_from_student(student_pipe, guidance: float = 1.0):
    """The multi-step pipeline sharing `student_pipe`'s tokenizer, text encoder and autoencoder,
    with its DiT converted by `teacher_transformer_from` (the recipe's starting point)."""
    return assemble_teacher(student_pipe.tokenizer, student_pipe.text_encoder, student_pipe.vae,
                            teacher_transformer_from(student_pipe.transformer, guidance))


def _training_latents(vae, n: int, seed: int, resolution: int, progress: bool):
    """n rendered scenes of the world (`training_pool`) encoded by the frozen encoder, and their captions."""
    with stage.progress_bar(n, 0, "render scenes", progress) as bar:
        images, captions = training_pool(n, seed, resolution, bar.update)
    chunks = []
    with torch.no_grad():
        for i in range(0, n, 256):
            chunks.append(vae.encode(from_uint8(images[i:i + 256], "cpu")).latent)
    return torch.cat(chunks) * vae.config.scaling_factor, captions


def train_teacher(out: str | Path, world: Any, cfg: TeacherConfig | None = None, seed: int = 0,
                  progress: bool = True) -> dict:
    """Train the teacher of `world` (a loaded `vhslab.world.World`) into `out` (resumable: a checkpoint
    every `cfg.checkpoint_every` steps) and save it as a SanaPipeline at `out/pipeline`. Returns the
    run's metrics (also `out/metrics.json`)."""
    cfg = cfg or TeacherConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage.check_config(out, cfg, seed, name="config.json", key="teacher")
    done = stage.finished_metrics(out)
    if done is not None and (out / "pipeline" / "model_index.json").is_file():
        return done
    pipe = world.pipeline
    torch.manual_seed(seed)
    dit = teacher_transformer_from(pipe.transformer).train().requires_grad_(True)
    text, vae = pipe.text_encoder.eval().requires_grad_(False), pipe.vae.eval().requires_grad_(False)
    t0 = time.perf_counter()
    lat, captions = _training_latents(vae, cfg.pool_size, seed + 11, world.info["resolution"], progress)
    msl = world.info["max_sequence_length"]
    ids, masks = tokenize(pipe.tokenizer, captions, msl)
    null_ids, null_mask = tokenize(pipe.tokenizer, [""], msl)
    ema = torch.optim.swa_utils.AveragedModel(dit, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema))
    opt = torch.optim.AdamW(dit.parameters(), lr=cfg.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed + 2)

    def loss_at(_step):
        idx = torch.randint(len(lat), (cfg.batch,), generator=gen)
        keep = (torch.rand(cfg.batch, generator=gen) >= cfg.cfg_dropout).view(-1, 1)
        x0, noise = lat[idx], torch.randn((cfg.batch, *lat.shape[1:]), generator=gen)
        tau = logit_normal(cfg.batch, gen, "cpu")
        with torch.no_grad():
            embeds = text(torch.where(keep, ids[idx], null_ids), attention_mask=torch.where(keep, masks[idx], null_mask))[0]
        t4 = tau.view(-1, 1, 1, 1)
        pred = dit((1 - t4) * x0 + t4 * noise, encoder_hidden_states=embeds,
                   encoder_attention_mask=torch.where(keep, masks[idx], null_mask), timestep=tau, return_dict=False)[0]
        return torch.nn.functional.mse_loss(pred, noise - x0)

    loop = stage.LoopConfig(cfg.steps, cfg.lr, cfg.warmup, cfg.checkpoint_every)
    state = {"gen": (gen.get_state, gen.set_state), "ema": (ema.state_dict, ema.load_state_dict)}
    step, seconds, losses = stage.train_steps(out, dit, opt, loop, loss_at, "teacher", progress,
                                              after_step=lambda: ema.update_parameters(dit), final_frac=0.0,
                                              state=state)
    teacher = assemble_teacher(pipe.tokenizer, pipe.text_encoder, pipe.vae, ema.module.eval())
    tmp = out / "pipeline.partial"
    teacher.save_pretrained(tmp, safe_serialization=True)
    tmp.replace(out / "pipeline") if not (out / "pipeline").exists() else None
    metrics = {**stage.loss_summary(losses), "steps": step, "seconds": round(time.perf_counter() - t0, 1),
               "train_seconds": round(seconds, 1), "pool": cfg.pool_size, "seed": seed, "config": cfg.to_dict()}
    return stage.finish(out, metrics)


def load_teacher(folder: str | Path, device: str = "cpu"):
    """The teacher SanaPipeline saved at `folder` (a `pipeline` folder of diffusers' layout)."""
    from diffusers import SanaPipeline

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise InputError(f"no teacher pipeline at {folder}: expected model_index.json")
    pipe = SanaPipeline.from_pretrained(folder, local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def teacher_card(metrics: dict) -> str:
    """The teacher's metrics as indented JSON (what `vhslab world teacher` prints)."""
    return json.dumps(metrics, indent=1)
