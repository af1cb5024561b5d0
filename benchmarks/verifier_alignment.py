"""How much of a candidate's caption its visual tokens carry after stage 1 (connector alone, LLM frozen):
validation caption NLL per token with the candidate's own hidden states against the same connector fed
another candidate's states (shuffled rows: in distribution, no information about this image).

    python benchmarks/verifier_alignment.py [--site block.10] [--steps 3000] [--lr 3e-3] [--grid 4] [--llm FOLDER]

Default store: the world's `verifier-train` (its meaning split's validation part, 256 rows); default LLM:
the world's. Prints one JSON object: NLL before and after, own vs shuffled, and the training curve.
"""

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch


def main() -> None:
    import vhslab
    from vhslab.data.default_stores import default_store
    from vhslab.probes.data import open_store, site_statistics
    from vhslab.trace import find_site
    from vhslab.verifier.data import ChunkReader, validation_split
    from vhslab.verifier.model import LatentVerifier
    from vhslab.verifier.train import VerifierTrainConfig, _accelerator, _align
    from vhslab.world.llm_train import load_llm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", default="block.10")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--llm", default=None)
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.llm:
        llm, tok = load_llm(args.llm)
    else:
        world = vhslab.load_world()
        llm, tok = world.llm, world.tokenizer
    ds = open_store(args.data or default_store("verifier-train", progress=False))
    site = find_site(ds, args.site)
    train, val = validation_split(ds, 0.2, 0)
    mean, var = site_statistics(ds, site, train)
    chunk = int(ds.attrs.get("sample_chunk", 64))
    read = ChunkReader(ds, site, chunk, keep=16)
    v = LatentVerifier.create(llm, tok, args.site, int(mean.shape[0]), mean=mean, var=var, seed=0,
                              token_grid=args.grid or None)
    captions = np.array([str(c) for c in ds["caption"].values])
    rows = val[:256]
    own = torch.as_tensor(read(rows))
    shuffled = own[torch.as_tensor(np.random.default_rng(0).permutation(len(rows)))]

    def nll(hidden) -> float:
        total, count = 0.0, 0
        with torch.no_grad():
            for lo in range(0, len(rows), 64):
                s, k = v.caption_nll(hidden[lo:lo + 64], list(captions[rows[lo:lo + 64]]))
                total, count = total + float(s), count + k
        return round(total / count, 4)

    before = {"own": nll(own), "shuffled": nll(shuffled)}
    cfg = replace(VerifierTrainConfig(), align_steps=args.steps, align_lr=args.lr, eval_every=max(1, args.steps // 20))
    history: list[dict] = []
    t0 = time.perf_counter()
    _align(v, read, train, captions, cfg, _accelerator(), chunk, None, (None, {}), False, history)
    print(json.dumps({"site": args.site, "steps": args.steps, "lr": args.lr, "grid": args.grid, "llm": args.llm or "world",
                      "seconds": round(time.perf_counter() - t0, 1), "val_nll_before": before,
                      "val_nll_after": {"own": nll(own), "shuffled": nll(shuffled)},
                      "train_nll": [(h["step"], round(h["caption_nll"], 4)) for h in history]}))


if __name__ == "__main__":
    main()
