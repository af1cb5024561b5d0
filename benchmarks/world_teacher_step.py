"""Time one teacher training step of the world's generator (text encoder + DiT, AdamW), eager
against compiled DiT blocks, fp32 against bf16 autocast, measured in one run.

    python benchmarks/world_teacher_step.py --profile gpu --batch 2048 512     # on a GPU
    python benchmarks/world_teacher_step.py --batch 64 --threads 2 --steps 5   # on this CPU
Prints one JSON object last: ms per step for each variant, their ratios to eager fp32, and the
first step's seconds (compilation).
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="default", help="default | gpu | tiny (the generator config)")
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (after 3 warm-up steps)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from vhslab.world.generator import build_text_encoder, build_transformer, compile_blocks, flow_loss
    from vhslab.world.stage import pick_device
    from vhslab.world.text import build_word_tokenizer
    from vhslab.world.train import profile_configs

    cfg = profile_configs(args.profile)["cfg"]
    dev = pick_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    tokenizer = build_word_tokenizer()

    def variant(compiled: bool):
        torch.manual_seed(0)
        text, dit = build_text_encoder(cfg, tokenizer).to(dev), build_transformer(cfg).to(dev)
        if compiled:
            compile_blocks(dit)
        opt = torch.optim.AdamW([*text.parameters(), *dit.parameters()], lr=1e-4)
        return text, dit, opt

    def step(parts, batch: int, bf16: bool) -> None:
        text, dit, opt = parts
        x0 = torch.randn(batch, cfg.latent_channels, cfg.latent_grid, cfg.latent_grid, device=dev)
        noise, tau = torch.randn_like(x0), torch.rand(batch, device=dev)
        ids = torch.randint(3, len(tokenizer), (batch, cfg.max_sequence_length), device=dev)
        mask = torch.ones_like(ids)
        with torch.autocast(dev.type, torch.bfloat16, enabled=bf16):
            loss = flow_loss(text, dit, x0, noise, tau, ids, mask, torch.full((batch,), 100.0, device=dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    result = {"device": str(dev), "profile": args.profile, "ms_per_step": {}, "ratio_to_eager_fp32": {}, "first_step_s": {}}
    models = {"eager": variant(False), "compiled": variant(True)}
    for batch in args.batch:
        for name, parts in models.items():
            for bf16 in (False, True):
                key = f"{name} {'bf16' if bf16 else 'fp32'} batch {batch}"
                start = time.perf_counter()
                step(parts, batch, bf16)
                sync()
                result["first_step_s"][key] = round(time.perf_counter() - start, 2)
                for _ in range(2):
                    step(parts, batch, bf16)
                sync()
                start = time.perf_counter()
                for _ in range(args.steps):
                    step(parts, batch, bf16)
                sync()
                result["ms_per_step"][key] = round((time.perf_counter() - start) / args.steps * 1000, 2)
                print(f"{key}: {result['ms_per_step'][key]} ms/step", flush=True)
        base = result["ms_per_step"][f"eager fp32 batch {batch}"]
        for key, ms in result["ms_per_step"].items():
            if key.endswith(f"batch {batch}"):
                result["ratio_to_eager_fp32"][key] = round(base / ms, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
