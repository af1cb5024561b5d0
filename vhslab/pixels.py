"""The one pixel conversion: float images -> uint8 (H, W, 3) as diffusers rounds them for PIL.

`to_uint8` takes images in [0, 1] (a pipeline's `output_type="np"`), `decoded_to_uint8` a decoder's
output in [-1, 1] (B, 3, H, W), mapped to [0, 1] as `VaeImageProcessor.denormalize` does (x * 0.5 + 0.5,
clamped). Both round half to even, as numpy and torch do. `from_uint8` is the way back (a decoder's input).
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(images) -> np.ndarray:
    """Float images in [0, 1] (numpy or anything `np.asarray` reads; values outside are clipped) -> uint8."""
    return (np.clip(np.asarray(images), 0, 1) * 255).round().astype(np.uint8)


def decoded_to_uint8(decoded: torch.Tensor) -> np.ndarray:
    """A decoder's output in [-1, 1], (B, 3, H, W) -> uint8 (B, H, W, 3), computed in float32 on the CPU."""
    return to_uint8((decoded.float().cpu() * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy())


def from_uint8(images: np.ndarray, device) -> torch.Tensor:
    """uint8 images (B, H, W, 3) -> float32 (B, 3, H, W) in [-1, 1] on `device`, a decoder's input."""
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1


__all__ = ["decoded_to_uint8", "from_uint8", "to_uint8"]
