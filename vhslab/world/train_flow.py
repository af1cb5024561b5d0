"""The world's generator stages (`vhslab world train`): the teacher (text encoder + DiT as a rectified
flow), its warm restart, and the one-step student distilled from it; mixed into WorldTrainer."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

import vhslab.statefile as statefile
from vhslab.pixels import decoded_to_uint8
from vhslab.shapes.evaluate import ShapesEvaluator, summarize
from vhslab.shapes.prompts import TAGS
from vhslab.shapes.suites import load_suite
from vhslab.world.generator import (
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
from vhslab.world.stage import loss_summary


def noise_generator(device: torch.device, seed: int) -> torch.Generator | None:
    """The flow stages' noise generator on a GPU: drawing a batch's noise on the CPU (2M normals at
    batch 2,048, ~15 ms) would add a fifth to a compiled GPU step. None on the CPU, where the batch
    generator draws it."""
    return torch.Generator(device).manual_seed(seed) if device.type == "cuda" else None


class FlowStages:
    """The `teacher`, `refine` and `distill` stages of WorldTrainer, and the quick score they report."""

    def stage_teacher(self, d: Path) -> dict:
        """Train a fresh text encoder + DiT as a rectified flow."""
        cfg = self.cfg
        text = build_text_encoder(cfg, self.tokenizer).to(self.device)
        dit = build_transformer(cfg).to(self.device)
        return self._train_flow(d, "teacher", text, dit, cfg.teacher_steps, cfg.teacher_lr, self.seed + 2)

    def stage_refine(self, d: Path) -> dict:
        """A second cosine cycle of the teacher from its EMA weights (warm restart)."""
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
        noise_gen = noise_generator(self.device, seed + 100)
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
        return {**loss_summary(losses), f"quick_score_{cfg.sample_steps}_steps": score}

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
        """Distil the one-step student from the teacher's CFG samples; its quick score."""
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
        return {**loss_summary(losses), "pairs": len(pairs["x0"]), "quick_score_one_step": score}

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
