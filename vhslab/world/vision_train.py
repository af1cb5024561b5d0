"""A tiny CLIP trained contrastively on the shapes world: the world's "CLIP" vision tower.

`train_vision(out_dir, VisionTrainConfig())` trains a `transformers.CLIPModel` on rendered
free scenes (single-object scenes mixed in generously) and their captions, and saves the
model, a 64x64 `CLIPImageProcessor` and the world tokenizer with `save_pretrained`.
`CLIPVisionModel.from_pretrained(out_dir)` reads the vision tower alone (see `vision_encoder`).

Metric: zero-shot colour and shape classification of single-object images by the nearest of
the 40 texts "a photo of a {color} {shape}", each attribute's probability marginalised over the
other one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import vhslab.world.stage as stage
from vhslab.shapes.phrasing import PREFIX, caption_scene, noun_phrase
from vhslab.shapes.scenes import COLORS, SHAPES, Scene, place, render, sample_free_scene, with_object
from vhslab.trace.vision import VisionEncoder
from vhslab.world.llm_train import load_tokenizer
from vhslab.world.text import build_word_tokenizer

EOS = " <eos>"


@dataclass(frozen=True)
class VisionTrainConfig:
    """Architecture and training settings of the world's tiny CLIP."""

    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 64
    vision_layers: int = 3
    vision_heads: int = 4
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    projection_dim: int = 64
    max_text_len: int = 32
    steps: int = 1200
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 100
    single_object_frac: float = 0.3  # chance that the next batch entry is a colour with all four shapes
    twin_frac: float = 0.5  # chance that a free scene comes with a twin of one other shape
    checkpoint_every: int = 250
    eval_per_class: int = 10  # zero-shot eval images per (colour, shape)

    @classmethod
    def tiny(cls) -> VisionTrainConfig:
        """A config that trains in seconds (smoke tests)."""
        return cls(
            vision_width=16, vision_layers=1, vision_heads=2, text_width=16, text_layers=1, text_heads=2,
            projection_dim=16, image_size=32, steps=8, batch_size=16, warmup=2, checkpoint_every=4,
            eval_per_class=1, lr=3e-3,
        )


def build_model(config: VisionTrainConfig, tokenizer, seed: int = 0):
    """A fresh, seeded CLIP model of the config over the world's tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    text = dict(
        vocab_size=len(tokenizer), hidden_size=config.text_width, intermediate_size=4 * config.text_width,
        num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
        max_position_embeddings=config.max_text_len, projection_dim=config.projection_dim, **ids,
    )
    vision = dict(
        hidden_size=config.vision_width, intermediate_size=4 * config.vision_width,
        num_hidden_layers=config.vision_layers, num_attention_heads=config.vision_heads,
        image_size=config.image_size, patch_size=config.patch_size, projection_dim=config.projection_dim,
    )
    torch.manual_seed(seed)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=config.projection_dim, **ids))


def build_processor(image_size: int = 64):
    """A CLIP image processor for square world images: resize/crop to the same size are no-ops."""
    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as Processor
    return Processor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def pixels(images: np.ndarray, processor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised (B, 3, H, W), exactly what the processor gives for square images."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).permute(0, 3, 1, 2)
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    return (x - mean) / std


def single_object_scene(shape: str, color: str, rng: np.random.Generator) -> Scene:
    """A scene of one object of `shape` and `color`, placed at random."""
    return Scene(tuple(place([(shape, color)], rng)))


def training_batch(config: VisionTrainConfig, seed: int, step: int) -> tuple[np.ndarray, list[str]]:
    """The batch of `step`: images and captions, distinct captions (no false negatives).

    Hard negatives make shape matter: single-object scenes come as a colour with all four
    shapes, and a free scene often comes with a twin whose one object has another shape.
    Seeded by (seed, step) alone, so a resumed run sees the same data."""
    rng = np.random.default_rng([seed, step, 1])
    names = list(COLORS)
    images: list[np.ndarray] = []
    captions: list[str] = []

    def add(scene: Scene) -> None:
        caption = caption_scene(scene) + EOS
        if caption not in captions and len(images) < config.batch_size:
            images.append(render(scene, config.image_size))
            captions.append(caption)

    while len(images) < config.batch_size:
        if rng.random() < config.single_object_frac:
            color = names[rng.integers(len(names))]
            for shape in rng.permutation(SHAPES):
                add(single_object_scene(str(shape), color, rng))
        else:
            scene = sample_free_scene(rng)
            add(scene)
            if rng.random() < config.twin_frac:
                i = int(rng.integers(len(scene.objects)))
                other = [s for s in SHAPES if s != scene.objects[i].shape]
                add(with_object(scene, i, shape=other[rng.integers(len(other))]))
    return np.stack(images), captions


def class_texts() -> tuple[list[str], list[tuple[str, str]]]:
    """The 40 zero-shot texts, colour-major: index = color_index * len(SHAPES) + shape_index."""
    pairs = [(c, s) for c in COLORS for s in SHAPES]
    return [PREFIX + noun_phrase(s, 1, c) + EOS for c, s in pairs], pairs


def eval_set(per_class: int, image_size: int = 64, seed: int = 12345) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Single-object images, `per_class` per (colour, shape): (images, colour ids, shape ids)."""
    rng = np.random.default_rng([seed, 7])
    images, colors, shapes = [], [], []
    for ci, c in enumerate(COLORS):
        for si, s in enumerate(SHAPES):
            for _ in range(per_class):
                images.append(render(single_object_scene(s, c, rng), image_size))
                colors.append(ci)
                shapes.append(si)
    return np.stack(images), np.array(colors), np.array(shapes)


def zero_shot_scores(image_emb: torch.Tensor, text_emb: torch.Tensor, colors, shapes, scale: float = 100.0) -> dict:
    """Zero-shot accuracies from embeddings. `text_emb` rows follow `class_texts()` order
    (colour-major); each attribute's probability is marginalised over the other attribute."""
    image_emb = torch.nn.functional.normalize(image_emb.float(), dim=-1)
    text_emb = torch.nn.functional.normalize(text_emb.float(), dim=-1)
    probs = (scale * image_emb @ text_emb.T).softmax(-1).view(len(image_emb), len(COLORS), len(SHAPES))
    colors, shapes = torch.as_tensor(colors), torch.as_tensor(shapes)
    color_pred = probs.sum(2).argmax(1)
    shape_pred = probs.sum(1).argmax(1)
    joint = probs.flatten(1).argmax(1)
    return {
        "zero_shot_color_acc": float((color_pred == colors).float().mean()),
        "zero_shot_shape_acc": float((shape_pred == shapes).float().mean()),
        "zero_shot_joint_acc": float((joint == colors * len(SHAPES) + shapes).float().mean()),
    }


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, processor, images, colors, shapes, batch_size: int = 200) -> dict:
    """Zero-shot colour / shape / joint accuracy of a CLIPModel on labelled single-object images."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    texts, _ = class_texts()
    tok = tokenizer(texts, padding=True, return_tensors="pt").to(device)
    text_emb = model.get_text_features(**tok)
    text_emb = getattr(text_emb, "pooler_output", text_emb)
    feats = []
    for i in range(0, len(images), batch_size):
        out = model.get_image_features(pixel_values=pixels(images[i : i + batch_size], processor).to(device))
        feats.append(getattr(out, "pooler_output", out))
    model.train(was_training)
    return zero_shot_scores(torch.cat(feats).cpu(), text_emb.cpu(), colors, shapes, float(model.logit_scale.exp()))


def train_vision(
    out_dir, config: VisionTrainConfig | None = None, seed: int = 0, device=None, progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train (or resume, or skip if finished) the world's CLIP in `out_dir`; returns its metrics.

    `stop_after`: checkpoint and return {"finished": False, "step": n} after that many steps
    (time-sliced runs and tests); a later call resumes exactly where it stopped.
    """
    config = config or VisionTrainConfig()
    out_dir = Path(out_dir)
    done = stage.finished_metrics(out_dir)
    if done is not None:
        return done
    stage.check_config(out_dir, config, seed)
    device = stage.pick_device(device)
    tokenizer = build_word_tokenizer()
    processor = build_processor(config.image_size)
    model = build_model(config, tokenizer, seed).to(device)
    optimizer = stage.adamw(model, config.lr, config.weight_decay, no_decay="embedding")

    def loss_at(step: int):
        images, captions = training_batch(config, seed, step)
        tok = tokenizer(captions, padding=True, return_tensors="pt").to(device)
        return model(**tok, pixel_values=pixels(images, processor).to(device), return_loss=True).loss

    def clamp_temperature():
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100.0))

    step, seconds, losses = stage.train_steps(out_dir, model, optimizer, config, loss_at, "vision (CLIP)",
                                              progress, stop_after, clamp_temperature)
    if step < config.steps:
        return {"finished": False, "step": step}
    model.eval()
    images, colors, shapes = eval_set(config.eval_per_class, config.image_size)
    metrics = zero_shot_accuracy(model, tokenizer, processor, images, colors, shapes)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    metrics.update(stage.run_summary(out_dir, model, step, seed, seconds, device, losses))
    metrics["eval_images"] = len(images)
    return stage.finish(out_dir, metrics)


def load_vision(folder):
    """(CLIPModel, image processor, tokenizer) saved by `train_vision`."""
    from transformers import AutoImageProcessor, CLIPModel

    return (CLIPModel.from_pretrained(folder, local_files_only=True).eval(),
            AutoImageProcessor.from_pretrained(folder, local_files_only=True), load_tokenizer(folder))


def vision_encoder(folder, layer: int = -2, drop_cls: bool = True):
    """The "MLLM with CLIP" baseline's encoder: the trained vision tower as a `VisionEncoder`."""
    from transformers import AutoImageProcessor, CLIPVisionModel
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the text tower's weights are "unexpected" for the vision model alone
    try:
        model = CLIPVisionModel.from_pretrained(folder, local_files_only=True).eval()
    finally:
        logging.set_verbosity(verbosity)
    return VisionEncoder(model, AutoImageProcessor.from_pretrained(folder, local_files_only=True), layer=layer, drop_cls=drop_cls)
