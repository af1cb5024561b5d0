"""The world's autoencoder stages (`vhslab world train`): the DC-AE on world images, its latent
scale and the pool's latents, and the decoder fine-tuned on noisy latents; mixed into WorldTrainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import vhslab.statefile as statefile
from vhslab.errors import MissingError
from vhslab.pixels import decoded_to_uint8, from_uint8
from vhslab.shapes.evaluate import ShapesEvaluator
from vhslab.shapes.scenes import render, sample_scene
from vhslab.shapes.suites import load_suite
from vhslab.shapes.worldcheck import perturbations
from vhslab.world.generator import build_autoencoder
from vhslab.world.stage import loss_summary


class AutoencoderStages:
    """The `autoencoder` and `decoder` stages of WorldTrainer, and the autoencoder and latents later stages load."""

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
        """Train the autoencoder on the pool, set its latent scale and measure the verdict agreement of reconstructions."""
        cfg = self.cfg
        images, _ = self.pool()
        vae = build_autoencoder(cfg).to(self.device)
        opt = torch.optim.AdamW(vae.parameters(), lr=cfg.ae_lr, weight_decay=0.0)
        gen = torch.Generator().manual_seed(self.seed)

        def loss_fn():
            idx = torch.randint(len(images), (cfg.ae_batch,), generator=gen).numpy()
            x = from_uint8(images[idx], self.device)
            recon = vae.decode(vae.encode(x).latent).sample
            return F.l1_loss(recon, x) + F.mse_loss(recon, x)

        losses = self._fit(d, "autoencoder", cfg.ae_steps, cfg.ae_lr, 50, vae, opt, loss_fn, gen, clip=None)
        vae.eval()
        with torch.no_grad():
            sample = from_uint8(images[: min(2048, len(images))], self.device)
            lat = torch.cat([vae.encode(b).latent for b in sample.split(256)])
        scale = float(1.0 / lat.std())
        vae.register_to_config(scaling_factor=scale)
        vae.save_pretrained(d / "model")
        agreement = self.reconstruction_agreement(vae)
        return {**loss_summary(losses), "scaling_factor": scale, "verdict_agreement": agreement}

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
        x = from_uint8(np.stack(imgs), self.device)
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
                chunks.append(vae.encode(from_uint8(images[i:i + 256], self.device)).latent.cpu())
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
            x = from_uint8(images[idx.numpy()], self.device)
            z = lat[idx]
            sigma = cfg.decoder_noise * torch.rand((len(z), 1, 1, 1), generator=gen)
            z = (z + sigma * torch.randn(z.shape, generator=gen)).to(self.device)
            recon = vae.decode(z / scale).sample
            return F.l1_loss(recon, x) + F.mse_loss(recon, x)

        losses = self._fit(d, "decoder", cfg.decoder_steps, cfg.decoder_lr, 50, vae.decoder, opt, loss_fn, gen,
                           clip=None)
        vae.eval()
        vae.save_pretrained(d / "model")
        return {**loss_summary(losses), "verdict_agreement": self.reconstruction_agreement(vae)}
