"""An LLM as judge of each candidate's *caption* (the evaluator's own description of the image, store
variable `caption`) in the verifier's question: what a verifier could reach if its visual tokens read
as well as that caption, and whether the LLM compares a description with a prompt at all.

    python benchmarks/llm_caption_judge.py [--test STORE] [LLM_FOLDER ...]

Default store: the world's `verifier-test`; default LLM: the world's. Prints one JSON row per LLM:
AUROC, within-prompt AUROC (overall and per tag) and accuracy at P(yes) > 0.5.
"""

import argparse
import json

import numpy as np
import torch


def main() -> None:
    from vhslab.data.default_stores import default_store
    from vhslab.probes.data import open_store
    from vhslab.probes.metrics import auroc_binary, auroc_within
    from vhslab.world import WORLD_DIR
    from vhslab.world.llm_corpus import dialogue_prefix
    from vhslab.world.llm_train import load_llm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("llms", nargs="*", default=[str(WORLD_DIR / "llm")])
    ap.add_argument("--test", default=None)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(2)
    ds = open_store(args.test or default_store("verifier-test", progress=False))
    prompts, captions, tags = (np.array([str(x) for x in ds[v].values]) for v in ("prompt", "caption", "tag"))
    y = ds["verdict"].values.astype(int)
    for path in args.llms:
        model, tok = load_llm(path)
        yes, no = tok.convert_tokens_to_ids(["yes", "no"])
        scores = []
        with torch.no_grad():
            for lo in range(0, len(y), args.batch):
                batch = [dialogue_prefix(tok, p, c) for p, c in zip(prompts[lo:lo + args.batch], captions[lo:lo + args.batch],
                                                                     strict=True)]
                t = tok(batch, padding=True, return_tensors="pt")  # right-padded: the answer follows the last real token
                logits = model(**t).logits[torch.arange(len(batch)), t["attention_mask"].sum(1) - 1]
                scores.append(torch.softmax(logits[:, [yes, no]], -1)[:, 0].numpy())
        s = np.concatenate(scores)
        print(json.dumps({"llm": path, "auroc": round(auroc_binary(y, s), 4), "within_prompt_auroc": round(auroc_within(y, s, prompts), 4),
                          "accuracy": round(float(((s > 0.5) == y).mean()), 4),
                          "within_by_tag": {t: round(auroc_within(y[tags == t], s[tags == t], prompts[tags == t]), 4)
                                            for t in sorted(set(tags))}}))


if __name__ == "__main__":
    main()
