"""DINOv2 pixel experts: the AlignGemini/DDA architecture (DINOv2 ViT + ``Linear(hidden->1)`` on the CLS
token), from two sources:

- ``dinov2``: a transformers ``Dinov2Model`` directory (``config.json`` + safetensors) whose weights also
  hold the head (``head.weight``/``head.bias``; ``classifier.*`` and ``fc.*`` are accepted).
- ``dda``: a DDA/AlignGemini *training* checkpoint: DINOv2 in the original torch.hub key naming, LoRA
  A/B matrices (rank 8, alpha 1 in the paper) on attn.qkv, attn.proj, mlp.fc1, mlp.fc2, and the head.
  LoRA is merged (W += alpha/r * B @ A) and the keys are mapped onto the transformers model.

The CLS feature is the final-layernormed CLS token (torch.hub's ``x_norm_clstoken`` == transformers'
``pooler_output``). Checkpoints load as tensors only (safetensors, or ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.export.checkpoint import load_tensors

HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1536: 24}
_WRAPPERS = ("module.", "model.", "base_model.model.", "backbone.", "dinov2.", "net.")  # training wrappers
_HUB_PREFIXES = (*_WRAPPERS, "encoder.")  # torch.hub naming never starts with "encoder.", transformers does
_HEAD_NAMES = ("head", "classifier", "fc", "linear", "cls_head")


class DinoV2Expert(nn.Module):
    """DINOv2 backbone + linear fake-logit head on the (layernormed) CLS token."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        cls = self.backbone(pixel_values=pixel_values).pooler_output
        return self.head(cls)

    @contextlib.contextmanager
    def fixed_input_size(self, height: int, width: int) -> Iterator[None]:
        """Inside: position embeddings are a constant for ``height`` x ``width`` inputs.

        transformers re-interpolates the position embeddings on every call while tracing, so an exported graph
        carries a bicubic Resize of the whole embedding grid (plus its shape arithmetic) although a bundle's
        input size is fixed. Measured with ORT profiling on the DINOv2-small-sized expert at 336 px, that one
        Resize was 19 % of the INT8 model's time. Interpolated once here, it folds into an initializer.
        """
        emb = self.backbone.embeddings
        n = (height // emb.patch_size) * (width // emb.patch_size) + 1
        with torch.no_grad():
            table = emb.interpolate_pos_encoding(torch.zeros(1, n, emb.position_embeddings.shape[-1]), height, width)

        def constant(embeddings: torch.Tensor, h: int, w: int) -> torch.Tensor:
            if (h, w) != (height, width):
                raise ExportError(f"model fixed to {height}x{width} inputs, got {h}x{w}")
            return table.to(embeddings.dtype)

        emb.interpolate_pos_encoding = constant
        try:
            yield
        finally:
            del emb.interpolate_pos_encoding  # back to the class method


def load_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors from safetensors (file or directory of shards) or a tensors-only torch checkpoint."""
    p = Path(path)
    files = sorted(p.glob("*.safetensors")) if p.is_dir() else [p]
    if p.is_dir() and not files:
        files = sorted(p.glob("*.bin")) + sorted(p.glob("*.pt")) + sorted(p.glob("*.pth"))
    if not files:
        raise ExportError(f"{p}: no weights (*.safetensors, *.bin, *.pt, *.pth) found")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(os.fspath(f)))
        else:
            obj = load_tensors(f)
            for key in ("state_dict", "model", "module"):
                if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                    obj = obj[key]
                    break
            state.update({k: v for k, v in obj.items() if isinstance(v, torch.Tensor)})
    return state


def _strip(key: str, prefixes: tuple[str, ...] = _WRAPPERS) -> str:
    changed = True
    while changed:
        changed = False
        for pre in prefixes:
            if key.startswith(pre):
                key, changed = key[len(pre):], True
    return key


def split_head(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], nn.Linear]:
    """Separate the ``Linear(hidden->1)`` head from backbone weights."""
    head_w = head_b = None
    rest = {}
    for k, v in state.items():
        s = _strip(k)
        name, _, leaf = s.rpartition(".")
        if name in _HEAD_NAMES and leaf in ("weight", "bias") and ((v.ndim == 2 and v.shape[0] == 1) or (v.ndim == 1
                                                                    and v.numel() == 1)):
            if leaf == "weight":
                head_w = v
            else:
                head_b = v
        else:
            rest[s] = v
    if head_w is None:
        raise ExportError("checkpoint has no Linear(hidden->1) head (expected head.weight of shape (1, hidden))")
    head = nn.Linear(head_w.shape[1], 1)
    with torch.no_grad():
        head.weight.copy_(head_w.float())
        head.bias.copy_(head_b.float() if head_b is not None else torch.zeros(1))
    return rest, head


def load_dinov2_dir(path: str | os.PathLike[str]) -> DinoV2Expert:
    """A transformers Dinov2Model directory with the head in its weights."""
    from transformers import Dinov2Config, Dinov2Model

    p = Path(path)
    if not (p / "config.json").is_file():
        raise ExportError(f"{p}: expected a transformers directory with config.json")
    config = Dinov2Config.from_dict(json.loads((p / "config.json").read_text()))
    state, head = split_head(load_state(p))
    backbone = Dinov2Model(config)
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.startswith("embeddings.mask_token")]
    if missing or unexpected:
        raise ExportError(f"{p}: weights do not match Dinov2Model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return DinoV2Expert(backbone, head).eval()


def merge_lora(state: dict[str, torch.Tensor], alpha: float = 1.0) -> dict[str, torch.Tensor]:
    """Fold LoRA pairs into their base weights: W <- W + (alpha / r) * B @ A.

    Accepts peft naming (``x.base_layer.weight``, ``x.lora_A[.default].weight``) and plain
    (``x.weight``, ``x.lora_A.weight``/``x.lora_down.weight``). Returns a state without LoRA keys.
    """
    base: dict[str, torch.Tensor] = {}
    loras: dict[str, dict[str, torch.Tensor]] = {}
    pat = re.compile(r"^(.*)\.(lora_A|lora_B|lora_down|lora_up)(?:\.default)?\.weight$")
    for k, v in state.items():
        m = pat.match(k)
        if m:
            loras.setdefault(m.group(1), {})["A" if m.group(2) in ("lora_A", "lora_down") else "B"] = v
        else:
            base[k.replace(".base_layer.", ".")] = v
    for mod, ab in loras.items():
        if set(ab) != {"A", "B"}:
            raise ExportError(f"LoRA for {mod} is incomplete (has {sorted(ab)})")
        a, b = ab["A"].float(), ab["B"].float()
        rank = a.shape[0]
        wkey = f"{mod}.weight"
        if wkey not in base:
            raise ExportError(f"LoRA targets {mod}, which has no base weight")
        base[wkey] = base[wkey].float() + (alpha / rank) * (b @ a)
    return base


def hub_to_hf(state: dict[str, torch.Tensor], image_size: int | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Map torch.hub DINOv2 keys onto transformers' Dinov2Model; returns (state, config kwargs)."""
    st = {_strip(k, _HUB_PREFIXES): v for k, v in state.items()}
    if "cls_token" not in st:
        raise ExportError("not a torch.hub DINOv2 state (no cls_token)")
    cfg = _hub_config(st, image_size)
    out: dict[str, torch.Tensor] = {
        "embeddings.cls_token": st["cls_token"],
        "embeddings.position_embeddings": st["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": st["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": st["patch_embed.proj.bias"],
        "layernorm.weight": st["norm.weight"], "layernorm.bias": st["norm.bias"],
    }
    if "mask_token" in st:
        out["embeddings.mask_token"] = st["mask_token"].reshape(1, cfg["hidden_size"])
    if "register_tokens" in st:
        out["embeddings.register_tokens"] = st["register_tokens"]
    for i in range(cfg["num_hidden_layers"]):
        out.update(_hub_block(st, i, cfg["use_swiglu_ffn"]))
    return out, cfg


def _hub_config(st: dict[str, torch.Tensor], image_size: int | None) -> dict[str, Any]:
    """Dinov2Config kwargs read off a torch.hub state's shapes (SwiGLU checkpoints keep transformers' ratio 4)."""
    hidden = st["cls_token"].shape[-1]
    patch = st["patch_embed.proj.weight"].shape[-1]
    layers = 1 + max(int(m.group(1)) for k in st if (m := re.match(r"blocks\.(\d+)\.", k)))
    grid = math.isqrt(st["pos_embed"].shape[1] - 1)
    swiglu = "blocks.0.mlp.w12.weight" in st
    inter = st["blocks.0.mlp.w12.weight" if swiglu else "blocks.0.mlp.fc1.weight"].shape[0]
    return {"hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": HEADS_BY_WIDTH.get(hidden, max(1, hidden // 64)),
            "patch_size": patch, "image_size": image_size or grid * patch, "use_swiglu_ffn": swiglu,
            "mlp_ratio": 4 if swiglu else inter / hidden, "layerscale_value": 1.0,
            "num_register_tokens": st["register_tokens"].shape[1] if "register_tokens" in st else 0}


def _hub_block(st: dict[str, torch.Tensor], i: int, swiglu: bool) -> dict[str, torch.Tensor]:
    """Transformer block ``i``'s tensors under transformers' names (the fused qkv split into query, key, value)."""
    b, h = f"blocks.{i}.", f"encoder.layer.{i}."
    q, k, v = st[b + "attn.qkv.weight"].chunk(3, dim=0)
    qb, kb, vb = st[b + "attn.qkv.bias"].chunk(3, dim=0)
    out = {
        h + "norm1.weight": st[b + "norm1.weight"], h + "norm1.bias": st[b + "norm1.bias"],
        h + "attention.attention.query.weight": q, h + "attention.attention.query.bias": qb,
        h + "attention.attention.key.weight": k, h + "attention.attention.key.bias": kb,
        h + "attention.attention.value.weight": v, h + "attention.attention.value.bias": vb,
        h + "attention.output.dense.weight": st[b + "attn.proj.weight"],
        h + "attention.output.dense.bias": st[b + "attn.proj.bias"],
        h + "layer_scale1.lambda1": st[b + "ls1.gamma"], h + "layer_scale2.lambda1": st[b + "ls2.gamma"],
        h + "norm2.weight": st[b + "norm2.weight"], h + "norm2.bias": st[b + "norm2.bias"],
    }
    mlp = ({"weights_in": "w12", "weights_out": "w3"} if swiglu else {"fc1": "fc1", "fc2": "fc2"})
    for hf, hub in mlp.items():
        for kind in ("weight", "bias"):
            out[f"{h}mlp.{hf}.{kind}"] = st[f"{b}mlp.{hub}.{kind}"]
    return out


def load_dda(path: str | os.PathLike[str], lora_alpha: float = 1.0, num_heads: int | None = None) -> DinoV2Expert:
    """A DDA/AlignGemini training checkpoint (hub naming + LoRA + head) as a merged transformers model."""
    from transformers import Dinov2Config, Dinov2Model

    state, head = split_head(load_state(path))
    merged = merge_lora(state, lora_alpha)
    hf_state, cfg = hub_to_hf(merged)
    if num_heads:
        cfg["num_attention_heads"] = num_heads
    backbone = Dinov2Model(Dinov2Config(**cfg))
    missing, unexpected = backbone.load_state_dict(hf_state, strict=False)
    missing = [m for m in missing if not m.startswith("embeddings.mask_token")]
    if missing or unexpected:
        raise ExportError(f"{path}: mapped weights do not fit Dinov2Model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return DinoV2Expert(backbone.float(), head).eval()
