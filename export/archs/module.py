"""Any one-logit image classifier: an ``nn.Module`` through the Python API (``PixelExportConfig(module=...)``) or a
TorchScript file (a zip of code and tensors: nothing is unpickled). Default input: the paper's 336 centre crop,
CLIP mean/std; pass ``input=`` for anything else."""

from __future__ import annotations

from typing import Any

from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.export.archs import PixelArch, need_weights, register
from aligngemini_sdk.export.archs.dinov2 import PAPER_INPUT


def _load(cfg: Any) -> Any:
    if cfg.module is not None:
        return cfg.module.eval()
    import torch

    path = need_weights(cfg)
    try:
        return torch.jit.load(path, map_location="cpu").eval()
    except Exception as exc:
        raise ExportError(f"{path}: not a TorchScript file ({exc}); pass an nn.Module through the Python API") from exc


register(PixelArch(name="module", help="TorchScript file (CLI) or any nn.Module (Python API)",
                   default_input=PAPER_INPUT, load=_load))
