"""A vision encoder for the `vision` site: a transformers vision model + its image processor."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class VisionEncoder:
    """Callable: uint8 images (B, H, W, 3) -> features (B, tokens, width) of hidden layer `layer`.

    The paper's baseline is CLIP ViT-L/14-336, penultimate layer, patch tokens only:
    `VisionEncoder(CLIPVisionModel.from_pretrained(...), CLIPImageProcessor.from_pretrained(...))`.
    """

    def __init__(self, model: Any, processor: Any, layer: int = -2, drop_cls: bool = True):
        self.model, self.processor, self.layer, self.drop_cls = model, processor, layer, drop_cls

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> torch.Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        param = next(self.model.parameters())
        out = self.model(pixel_values=pixels.to(param.device, param.dtype), output_hidden_states=True)
        feats = out.hidden_states[self.layer]
        return feats[:, 1:] if self.drop_cls else feats
