"""Training states and caches as ONE safetensors file, never a pickle.

A state is nested dicts/lists/tuples of tensors, numpy arrays, ints, floats, bools, None and
strings (a model's and an optimizer's state_dict, the step, RNG ByteTensors, histories). `save`
stores every tensor under its path in the structure and the rest as a JSON skeleton in the
file's metadata header, so tensors and skeleton cannot tear apart; the file is written to a temp
sibling, fsynced and renamed over the old one. `load` gives the state back exactly (tuples stay
tuples, dict keys keep their types, dtypes and shapes exact) and never unpickles.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vhslab.errors import InputError
from vhslab.outputs import atomic_path

FORMAT = "vhslab.statefile/1"


class StateFileError(InputError):
    """A state file that cannot be read: damaged, torn, or not a vhslab state file (a pickle)."""


def _encode(obj, path: str, tensors: dict):
    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(obj)
    if isinstance(obj, torch.Tensor):
        key = path.lstrip("/") or "."
        if key in tensors:
            raise InputError(f"two tensors of the state have the path {key!r}")
        order = sorted(range(obj.ndim), key=lambda d: -obj.stride(d))  # the memory layout (channels-last ...)
        dense = obj.permute(order).is_contiguous() and order != sorted(order)
        t = obj.detach().permute(order) if dense else obj.detach()
        tensors[key] = t.to("cpu", copy=True).contiguous()  # own storage: no views, no shared ones
        return {"tensor": key, "order": order} if dense else {"tensor": key}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"float": repr(obj)}  # 'nan', 'inf', '-inf': JSON has none
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else {"tuple": items}
    if isinstance(obj, dict):
        for k in obj:
            if not (k is None or isinstance(k, (bool, int, float, str))):
                raise TypeError(f"state key {k!r} at {path or '.'}: only str, int, float, bool or None keys are kept")
        return {"dict": [[k, _encode(v, f"{path}/{k}", tensors)] for k, v in obj.items()]}
    raise TypeError(f"{type(obj).__name__} at {path or '.'} cannot be saved in a state file")


def _decode(node, tensors):
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "tensor" in node:  # laid out in memory as saved: kernels (and so the numbers) follow the layout
        t = tensors.get_tensor(node["tensor"])
        return t.permute(sorted(range(t.ndim), key=node["order"].__getitem__)) if "order" in node else t
    (tag, value), = node.items()
    if tag == "float":
        return float(value)
    if tag == "tuple":
        return tuple(_decode(v, tensors) for v in value)
    return {k: _decode(v, tensors) for k, v in value}


def save(path: str | Path, state) -> None:
    """Write `state` to `path` atomically: a killed or failed save leaves the previous file whole."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = json.dumps(_encode(state, "", tensors), allow_nan=False)
    with atomic_path(path) as tmp:  # a save point of vhslab.outputs' fault injection
        save_file(tensors, tmp, metadata={"format": FORMAT, "skeleton": skeleton})


def load(path: str | Path, what: str = "checkpoint"):
    """The state saved in `path`; `StateFileError` naming the file if it is damaged or not one."""
    path = Path(path)
    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise StateFileError(f"{what} {path} is a safetensors file but not a vhslab state file "
                                     f"(format {meta.get('format')!r}): remove it to start over")
            return _decode(json.loads(meta["skeleton"]), f)
    except (StateFileError, FileNotFoundError):
        raise
    except Exception as err:  # safetensors, json and a mangled skeleton raise many types
        with open(path, "rb") as f:
            head = f.read(9)  # safetensors: 8 bytes of header length, then the JSON header's "{"
        if head[8:] != b"{" and (head[:1] == b"\x80" or head[:2] == b"PK"):  # a bare pickle or torch.save's zip
            raise StateFileError(f"{what} {path} is a pickle (an old-format or foreign file); vhslab never loads "
                                 "pickles: remove it to start over") from None
        raise StateFileError(f"damaged {what} {path} ({type(err).__name__}: {err}): remove it to start over") from err
