"""Train a verifier on a planted store and save its weights: run alone and under
`accelerate launch --cpu --num_processes 2` by tests/test_verifier_train.py."""

import json
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from tiny_models import tiny_llm  # this folder is the script's sys.path[0]

from vhslab.testing import planted_store
from vhslab.verifier.train import VerifierTrainConfig, train_verifier
from vhslab.world.text import build_word_tokenizer

torch.set_num_threads(1)
llm = tiny_llm(0)
ds = planted_store(n_samples=256, n_layers=2, n_tokens=4, n_channels=16, signal_layer=1, strength=1.5,
                   chunk_samples=32, seed=3).load()
extra = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}  # other VerifierTrainConfig fields
cfg = VerifierTrainConfig(**{"steps": 12, "batch_size": 16, "eval_every": 6, "align_steps": 4, **extra})
verifier, info = train_verifier(ds, "block.1", llm, build_word_tokenizer(), cfg, progress=False)
if info["processes"] == 1 or torch.distributed.get_rank() == 0:
    state = {k: v.detach().clone().contiguous() for k, v in verifier.state_dict().items() if k != "llm.lm_head.weight"}
    save_file(state, sys.argv[1], metadata={"processes": str(info["processes"]),
                                           "val_auroc": str(info["best_val_auroc"])})
    np.save(sys.argv[1] + ".history.npy", np.array([h.get("val_auroc", h.get("caption_nll")) for h in info["history"]]))
