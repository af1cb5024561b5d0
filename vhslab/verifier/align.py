"""Stage 1 of a verifier's training: the connector alone learns to caption the candidate (the LLM frozen)."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from vhslab.verifier.checkpoint import save_checkpoint
from vhslab.verifier.data import index_batches


def align_connector(verifier, read, train, captions, cfg, acc, chunk, state, saving, progress, history) -> None:
    """Stage 1: the connector alone, next-token loss on the candidate's caption; the LLM frozen."""
    if state and state["stage"] == 2:
        return  # done before the run stopped; stage 2's checkpoint holds its result
    verifier.llm.requires_grad_(False)
    opt = torch.optim.AdamW(verifier.connector.parameters(), lr=cfg.align_lr, weight_decay=0.0)
    model, opt = acc.prepare(verifier, opt)
    start = 1
    if state and state["stage"] == 1:
        verifier.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"] + 1
    batches = index_batches(train, chunk, cfg.batch_size, cfg.seed + 1, mix=cfg.mix_chunks)
    for _ in range(start - 1):
        next(batches)
    bar = tqdm(range(start, cfg.align_steps + 1), desc="align connector", disable=not progress or not acc.is_main_process)
    for step in bar:
        model.train()
        idx = next(batches)
        mine = idx[acc.process_index::acc.num_processes]
        total = sum(len(verifier.caption_pieces(c)[2]) for c in captions[idx])  # caption tokens of the global batch
        nll, _ = model(torch.as_tensor(read(mine)), [""] * len(mine), list(captions[mine]))
        loss = nll / total * acc.num_processes
        opt.zero_grad()
        acc.backward(loss)
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.align_steps:
            history.append({"stage": 1, "step": step, "caption_nll": acc.reduce(loss.detach(), "mean").item()})
            bar.set_postfix(nll=round(history[-1]["caption_nll"], 3))
            save_checkpoint(*saving, acc=acc, state={
                "stage": 1, "step": step, "model": verifier.state_dict(), "opt": opt.state_dict(), "history": history})


__all__ = ["align_connector"]
