"""LatentVerifier: a DiT block's hidden states -> connector -> a causal LM that answers yes or no.

score = P(yes) / (P(yes) + P(no)) at the answer position of one chat turn that holds the visual
tokens at an image placeholder. Any transformers causal LM works (the world's Qwen2 by default,
Qwen2.5-0.5B by path); hidden states are normalised per channel with stored statistics, then
mapped by Linear-GELU-Linear into the LLM's embedding space (the release's `mlp2x_gelu`).

    v = LatentVerifier.create(llm, tokenizer, site="block.9", in_channels=96, mean=mu, var=var)
    v.score(hidden, prompts)            # hidden: (batch, tokens, channels) -> numpy (batch,)
    v.save_pretrained("verifier/"); LatentVerifier.from_pretrained("verifier/")
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vhslab.errors import InputError
from vhslab.outputs import Output, atomic_path, check_complete, saving
from vhslab.probes.data import grid_pool
from vhslab.schemas import VERIFIER_FILES, check_release, read_verifier_config
from vhslab.trace.site import Site

SYSTEM = "you are an image analysis assistant ."
QUESTION = "<image> does this image match the prompt : {prompt} ? answer yes or no ."
CONFIG, WEIGHTS = VERIFIER_FILES  # the file names are the schema's, which checks a saved folder for both
VERIFIER_KIND = "verifier"  # the kind in a saved verifier folder's vhslab manifest


class VerifierError(InputError):
    """Bad input to a verifier (wrong width or site, too long, a tokenizer without yes/no tokens)."""


@dataclass
class VerifierConfig:
    """What defines a verifier besides its weights."""

    site: str  # "block.7", "ae_latent", "vision" or "text" (no visual tokens)
    in_channels: int
    system: str = SYSTEM  # "" leaves the system turn out (shorter inputs)
    question: str = QUESTION  # must hold `image_token` (unless site == "text") and "{prompt}"
    image_token: str = "<image>"
    answers: tuple[str, str] = ("yes", "no")
    eps: float = 1e-6
    token_grid: int | None = None  # pool the (square) token grid to g x g before the connector; None: all tokens
    extra: dict = field(default_factory=dict)  # free-form provenance (training data, seed, ...)


class LatentVerifier(torch.nn.Module):
    """A DiT site's hidden states, normalised and mapped by the connector into a causal LM's embeddings,
    asked whether the image matches the prompt: `score` is P(yes) / (P(yes) + P(no))."""

    def __init__(self, llm, tokenizer, config: VerifierConfig):
        super().__init__()
        self.llm, self.tokenizer, self.config = llm, tokenizer, config
        width = llm.get_input_embeddings().embedding_dim
        self.connector = torch.nn.Sequential(
            torch.nn.Linear(config.in_channels, width), torch.nn.GELU(), torch.nn.Linear(width, width))
        self.register_buffer("mean", torch.zeros(config.in_channels))
        self.register_buffer("var", torch.ones(config.in_channels))
        self.answer_ids = [self._single_token(a) for a in config.answers]
        self._pieces: dict[str, tuple[list[int], list[int]]] = {}  # token ids per prompt / caption, made once
        self._captions: dict[str, tuple[list[int], list[int], list[int]]] = {}
        if config.site != "text" and config.image_token not in config.question:
            raise VerifierError(f"the question has no image placeholder {config.image_token!r}")

    @classmethod
    def create(cls, llm, tokenizer, site: str, in_channels: int, mean=None, var=None, seed: int = 0,
               **config) -> LatentVerifier:
        """A new verifier with a freshly initialised (seeded) connector and the given statistics."""
        torch.manual_seed(seed)
        v = cls(llm, tokenizer, VerifierConfig(site, in_channels, **config))
        if mean is not None:
            v.set_statistics(mean, var)
        return v

    def set_statistics(self, mean, var) -> None:
        """The per-channel mean and variance the hidden states are normalised with (finite, one per channel)."""
        mean, var = (torch.as_tensor(np.asarray(x, np.float32)).flatten() for x in (mean, var))
        if mean.numel() != self.config.in_channels or var.numel() != self.config.in_channels:
            raise VerifierError(f"statistics of {mean.numel()}/{var.numel()} channels for a verifier of "
                                f"{self.config.in_channels}")
        if (var < 0).any() or not (torch.isfinite(mean).all() and torch.isfinite(var).all()):
            raise VerifierError("statistics must be finite, variances >= 0")
        self.mean.copy_(mean)
        self.var.copy_(var)

    # --- text -----------------------------------------------------------------------------------
    def _single_token(self, word: str) -> int:
        ids = self.tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise VerifierError(f"the tokenizer splits {word!r} into {len(ids)} tokens; the verifier needs one token each "
                                f"for {self.config.answers}")
        return ids[0]

    def _system(self) -> list[dict]:
        return [{"role": "system", "content": self.config.system}] if self.config.system else []  # "": no system turn

    def pieces(self, prompt: str) -> tuple[list[int], list[int]]:
        """Token ids before and after the visual tokens (the chat turn split at the placeholder)."""
        if prompt not in self._pieces:
            cfg = self.config
            question = cfg.question.format(prompt=prompt)
            if cfg.site == "text":  # the same question, without the image
                question = " ".join(question.replace(cfg.image_token, " ").split())
            messages = [*self._system(), {"role": "user", "content": question}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            before, _, after = text.partition(cfg.image_token) if cfg.site != "text" else (text, "", "")
            ids = [self.tokenizer(part, add_special_tokens=False).input_ids for part in (before, after)]
            bos = self.tokenizer.bos_token_id
            if bos is not None and getattr(self.tokenizer, "add_bos_token", True) and (not ids[0] or ids[0][0] != bos):
                ids[0] = [bos, *ids[0]]
            self._pieces[prompt] = (ids[0], ids[1])
        return self._pieces[prompt]

    # --- scoring --------------------------------------------------------------------------------
    def visual_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, channels) hidden states -> (batch, tokens, LLM width) embeddings."""
        x = (hidden.float() - self.mean.float()) / torch.sqrt(self.var.float() + self.config.eps)
        x = x.to(self.connector[0].weight.dtype)
        if self.config.token_grid:
            x = grid_pool(x, self.config.token_grid)
        return self.connector(x)

    def check(self, hidden: torch.Tensor | None, prompts: list[str], site: str | None = None) -> None:
        """Every input error, before any compute."""
        cfg = self.config
        if site is not None and site != cfg.site:
            raise VerifierError(f"this verifier reads site {cfg.site!r}, not {site!r}")
        if cfg.site == "text":
            n_visual = 0
        else:
            if hidden is None or hidden.ndim != 3:
                raise VerifierError(f"hidden states must be (batch, tokens, channels), got "
                                    f"{None if hidden is None else tuple(hidden.shape)}")
            if hidden.shape[-1] != cfg.in_channels:
                raise VerifierError(f"hidden states have {hidden.shape[-1]} channels; the connector of site {cfg.site} "
                                    f"takes {cfg.in_channels}")
            if hidden.shape[0] != len(prompts):
                raise VerifierError(f"{hidden.shape[0]} hidden states for {len(prompts)} prompts")
            if not torch.isfinite(hidden).all():
                raise VerifierError("hidden states hold NaN/Inf values")
            n_visual = hidden.shape[1]
            if cfg.token_grid:
                side = round(n_visual**0.5)
                if side * side != n_visual:
                    raise VerifierError(f"{n_visual} tokens are no square grid; cannot pool to {cfg.token_grid}x{cfg.token_grid}")
                n_visual = min(cfg.token_grid, side) ** 2
        limit = getattr(self.llm.config, "max_position_embeddings", None)
        if limit:
            longest = max(sum(map(len, self.pieces(p))) for p in prompts) + n_visual
            if longest > limit:
                raise VerifierError(f"an input of {longest} tokens ({n_visual} visual) exceeds the LLM's context of "
                                    f"{limit}; pool the visual tokens or use a longer-context LLM")

    def embed_inputs(self, hidden: torch.Tensor | None, id_pairs: list[tuple[list[int], list[int]]]):
        """Left-padded (inputs_embeds, attention_mask, position_ids) of `before + visual + after` per
        row; positions count from each row's first real token."""
        embed = self.llm.get_input_embeddings()
        device = embed.weight.device
        visual = self.visual_tokens(hidden.to(device)) if self.config.site != "text" else None
        rows = []
        for i, (before, after) in enumerate(id_pairs):
            before, after = (torch.tensor(p, dtype=torch.long, device=device) for p in (before, after))
            parts = [embed(before)] + ([visual[i].to(embed.weight.dtype)] if visual is not None else []) + [embed(after)]
            rows.append(torch.cat(parts))
        length = max(len(r) for r in rows)
        inputs = torch.zeros(len(rows), length, rows[0].shape[-1], dtype=rows[0].dtype, device=device)
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=device)
        for i, r in enumerate(rows):
            inputs[i, length - len(r):] = r
            mask[i, length - len(r):] = 1
        return inputs, mask, (mask.cumsum(1) - 1).clamp(min=0)

    def answer_logits(self, hidden: torch.Tensor | None, prompts: list[str]) -> torch.Tensor:
        """(batch, 2) logits of the answers at the answer position."""
        inputs, mask, positions = self.embed_inputs(hidden, [self.pieces(p) for p in prompts])
        out = self.llm(inputs_embeds=inputs, attention_mask=mask, position_ids=positions)
        return out.logits[:, -1, self.answer_ids].float()

    def caption_pieces(self, caption: str) -> tuple[list[int], list[int], list[int]]:
        """Stage-1 (alignment) turn: the user turn holds only the visual tokens, the assistant
        answers with `caption`. Returns (before, after, caption ids + eos)."""
        if self.config.site == "text":
            raise VerifierError("a text-only verifier has no connector to align")
        if caption not in self._captions:
            messages = [*self._system(), {"role": "user", "content": self.config.image_token}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            before, _, after = text.partition(self.config.image_token)
            ids = [self.tokenizer(part, add_special_tokens=False).input_ids for part in (before, after, caption)]
            bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
            if bos is not None and getattr(self.tokenizer, "add_bos_token", True) and (not ids[0] or ids[0][0] != bos):
                ids[0] = [bos, *ids[0]]
            self._captions[caption] = (ids[0], ids[1], ids[2] + ([eos] if eos is not None else []))
        return self._captions[caption]

    def caption_nll(self, hidden: torch.Tensor, captions: list[str]) -> tuple[torch.Tensor, int]:
        """Summed next-token NLL of the captions given the visual tokens, and the token count."""
        parts = [self.caption_pieces(c) for c in captions]
        inputs, mask, positions = self.embed_inputs(hidden, [(b, a + c) for b, a, c in parts])
        logits = self.llm(inputs_embeds=inputs, attention_mask=mask, position_ids=positions).logits.float()
        targets = torch.full(mask.shape, -100, dtype=torch.long, device=logits.device)
        for i, (_, _, cap) in enumerate(parts):
            targets[i, mask.shape[1] - len(cap):] = torch.tensor(cap, device=logits.device)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets[:, 1:], reduction="sum")
        return nll, int((targets[:, 1:] >= 0).sum())

    def forward(self, hidden: torch.Tensor | None, prompts: list[str], captions: list[str] | None = None):
        """Answer logits; with `captions`, the stage-1 (summed NLL, token count). Training goes
        through here so that a DistributedDataParallel wrapper sees the forward pass."""
        return self.answer_logits(hidden, prompts) if captions is None else self.caption_nll(hidden, captions)

    @torch.no_grad()
    def score(self, hidden, prompts: list[str], batch_size: int = 64, site: str | None = None) -> np.ndarray:
        """P(yes) / (P(yes) + P(no)) per candidate; `hidden` (batch, tokens, channels) or None for text.

        Scores that cannot differ tie exactly: identical inputs (same prompt and states) in one call are
        scored once, and a text-only verifier scores each distinct prompt alone (no padding, no batch
        neighbours), so one prompt gets the same bits in every call. Padding to a batch's longest row
        otherwise moves a score by ~1e-7, enough to break ties a ranking metric must count as halves."""
        if len(prompts) == 0:  # no candidate: no score (not an error of max() over nothing)
            return np.zeros(0, np.float32)
        hidden = None if hidden is None else torch.as_tensor(np.asarray(hidden) if not torch.is_tensor(hidden) else hidden)
        prompts = list(prompts)
        self.check(hidden, prompts, site)
        keys = prompts if hidden is None else [
            (p, hashlib.sha1(row.contiguous().view(torch.uint8).numpy().tobytes()).digest())
            for p, row in zip(prompts, hidden.cpu(), strict=True)]
        first = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        index = np.fromiter(first.values(), int, len(first))
        where = np.array([first[key] for key in keys])
        step = 1 if hidden is None else batch_size  # text: each prompt alone, whatever else is in the call
        was = self.training
        self.eval()
        out = []
        for lo in range(0, len(index), step):
            rows = index[lo:lo + step]
            h = None if hidden is None else hidden[torch.as_tensor(rows)]
            out.append(torch.softmax(self.answer_logits(h, [prompts[i] for i in rows]), -1)[:, 0].cpu())
        self.train(was)
        unique = torch.cat(out).numpy()
        return unique[np.searchsorted(index, where)]

    def fingerprint(self) -> str:
        """A short hash of the config and every weight (LLM included): equal for the same verifier, so
        results cached under it are never reused for another."""
        h = hashlib.sha256(json.dumps(asdict(self.config), sort_keys=True, default=str).encode())
        for name, value in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    # --- io -------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        """Connector and statistics (safetensors), config (JSON), the LLM and tokenizer (their own format)."""
        path = Path(path)
        out = Output(path, VERIFIER_KIND, folder=True)
        with saving(out):  # marked incomplete until the last file is written: a cut save is never read as whole
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("llm.")}
            with atomic_path(path / WEIGHTS) as tmp:
                save_file(state, tmp)
            with atomic_path(path / CONFIG) as tmp:
                tmp.write_text(json.dumps(asdict(self.config), indent=1) + "\n")
            self.llm.save_pretrained(path / "llm")
            self.tokenizer.save_pretrained(path / "tokenizer")  # apart: AutoTokenizer would follow the LLM's model_type
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, llm=None, tokenizer=None, kind: str | None = None) -> LatentVerifier:
        """A saved verifier; with `kind` ("vhs", "text", "vision", "ae") one of that kind, else an error
        before anything is loaded. The folder is read locally only (never taken for a hub id)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        check_complete(path, "verifier")
        parts = (() if llm is not None else ("llm/config.json",)) + (() if tokenizer is not None else ("tokenizer",))
        config = read_verifier_config(path, VerifierConfig, kind, VerifierError, parts)  # files there, verifier.json fits its schema
        try:
            llm = llm or AutoModelForCausalLM.from_pretrained(path / "llm", local_files_only=True, use_safetensors=True)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
        except OSError as err:  # transformers' word for an incomplete model folder (no weights, ...)
            raise VerifierError(f"{path} is not a complete saved LatentVerifier: {str(err).strip().splitlines()[0]}") from None
        v = cls(llm, tokenizer, config)
        try:
            weights = load_file(path / WEIGHTS)
        except Exception as err:  # safetensors' SafetensorError (header too large, ...): a damaged or foreign file
            raise VerifierError(f"{path / WEIGHTS} is not a safetensors file ({type(err).__name__}: {err}); "
                                "vhslab reads no other weight format") from None
        missing, unexpected = v.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not k.startswith("llm.")]
        if missing or unexpected:
            raise VerifierError(f"{path / WEIGHTS}: missing {missing}, unexpected {unexpected}")
        return v.eval()


def check_generator(verifier: LatentVerifier, ds) -> None:
    """Refuse a store of another generator than the one whose states the verifier was trained on (both
    recorded: the store's `generator` attr, the verifier's `extra["generator"]`); a text-only verifier reads
    no states and takes any store."""
    trained, here = verifier.config.extra.get("generator"), ds.attrs.get("generator")
    if verifier.config.site != "text" and trained and here and trained != here:
        raise VerifierError(f"the verifier was trained on states of generator {trained}, the store holds generator {here}'s: "
                            "score a store extracted with the verifier's generator, or train a verifier on this one")


# --- the public release's layout (LLaVA-Qwen keys, separate mean/variance files) -------------------------
RELEASE_SYSTEM = "You are a helpful assistant."
RELEASE_QUESTION = ("<image>\nAnalyze the image. The given prompt is: {prompt}. Does the image match the prompt? "
                    "Answer yes or no.")


def from_release(path: str | Path, site: str | None = None, **config) -> LatentVerifier:
    """Load a verifier saved in the public release's layout (`../shared/REFERENCE.md`): a LLaVA-Qwen
    `config.json` (Qwen2 fields + `mm_hidden_size`, `mm_projector_type` = mlp2x_gelu), weights with
    `model.mm_projector.{0,2}.*` beside the Qwen2 keys, the tokenizer, and `block_{k}_mean_bf16.pt` /
    `block_{k}_variance_bf16.pt` (bare tensors, read with weights_only). The question's exact wording
    in the release is not known here: pass `system=` / `question=` to match it."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    raw, site = check_release(path, site, VerifierError)  # config.json fits its schema; weights, tokenizer, statistics there
    qwen = Qwen2Config(**{k: v for k, v in raw.items() if not k.startswith("mm_") and k not in ("model_type", "architectures")})
    llm = Qwen2ForCausalLM(qwen)
    state = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(file))
    connector = {k.removeprefix("model.mm_projector."): v for k, v in state.items() if k.startswith("model.mm_projector.")}
    llm_state = {k: v for k, v in state.items() if not k.startswith(("model.mm_projector.", "model.vision_tower."))}
    missing, unexpected = llm.load_state_dict(llm_state, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight" or not qwen.tie_word_embeddings]:
        raise VerifierError(f"{path}: LLM weights do not fit its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    config = {"system": RELEASE_SYSTEM, "question": RELEASE_QUESTION, **config}
    v = LatentVerifier(llm, AutoTokenizer.from_pretrained(path, local_files_only=True), VerifierConfig(site, int(raw["mm_hidden_size"]), **config))
    v.connector.load_state_dict(connector)
    if Site.parse(site).is_block:
        k = Site.parse(site).index
        mean, var = (torch.load(path / f"block_{k}_{n}_bf16.pt", weights_only=True).float() for n in ("mean", "variance"))
        v.set_statistics(mean, var)
    return v.to(llm.dtype).eval()
