"""DINOv2 experts: a transformers directory (``dinov2``) and a DDA training checkpoint (``dda``: torch.hub key
naming + LoRA rank 8 on qkv/proj/fc1/fc2 + head) export to ONNX with FP32 parity < 1e-4 vs PyTorch."""

import json

import numpy as np
import pytest
import torch

from aligngemini_sdk import Detector
from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.export.dinov2 import DinoV2Expert, hub_to_hf, load_dda, merge_lora
from aligngemini_sdk.export.pixel import PixelExportConfig, export_pixel
from aligngemini_sdk.image import load_image
from aligngemini_sdk.manifest import InputSpec
from aligngemini_sdk.preprocess import preprocess
from tests.conftest import fake_images, real_images

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)

torch.manual_seed(0)
SPEC = InputSpec(height=112, width=112)  # 8x8 patches; small and quick, same code path as 336


def tiny_dinov2():
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                       image_size=56, patch_size=14, layerscale_value=0.5)
    bb = Dinov2Model(cfg).eval()
    with torch.no_grad():
        bb.embeddings.cls_token.normal_(0, 0.5)
        bb.embeddings.position_embeddings.normal_(0, 0.5)
    head = torch.nn.Linear(64, 1)
    with torch.no_grad():
        head.weight.normal_(0, 1.0)
    return DinoV2Expert(bb, head).eval()


def probs_torch(model, paths, spec=SPEC):
    with torch.no_grad():
        return np.array([float(torch.sigmoid(model(torch.from_numpy(preprocess(load_image(p).rgb, spec))[None]))[0, 0])
                         for p in paths])


def to_hub(model: DinoV2Expert) -> dict:
    """Inverse of the exporter's mapping, written independently: transformers keys -> torch.hub keys."""
    sd = model.backbone.state_dict()
    hub = {"cls_token": sd["embeddings.cls_token"], "pos_embed": sd["embeddings.position_embeddings"],
           "mask_token": sd["embeddings.mask_token"].reshape(1, -1),
           "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
           "norm.weight": sd["layernorm.weight"], "norm.bias": sd["layernorm.bias"]}
    for i in range(model.backbone.config.num_hidden_layers):
        h, b = f"encoder.layer.{i}.", f"blocks.{i}."
        a = h + "attention.attention."
        hub[b + "attn.qkv.weight"] = torch.cat([sd[a + n + ".weight"] for n in ("query", "key", "value")])
        hub[b + "attn.qkv.bias"] = torch.cat([sd[a + n + ".bias"] for n in ("query", "key", "value")])
        for src, dst in [("attention.output.dense", "attn.proj"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"),
                         ("norm1", "norm1"), ("norm2", "norm2")]:
            hub[b + dst + ".weight"], hub[b + dst + ".bias"] = sd[h + src + ".weight"], sd[h + src + ".bias"]
        hub[b + "ls1.gamma"], hub[b + "ls2.gamma"] = sd[h + "layer_scale1.lambda1"], sd[h + "layer_scale2.lambda1"]
    return hub


def test_dinov2_directory_export_parity(tmp_path, collection):
    from safetensors.torch import save_file

    model = tiny_dinov2()
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(model.backbone.config.to_dict()))
    save_file({**model.backbone.state_dict(), "head.weight": model.head.weight, "head.bias": model.head.bias},
              str(d / "model.safetensors"))
    out = tmp_path / "bundle"
    rep = export_pixel(PixelExportConfig(arch="dinov2", weights=str(d), out=out, input=SPEC, calib=str(collection),
                                         val=str(collection), allow_small_calib=True, fallback_rounds=1))
    assert rep.artifacts["fp32"].max_abs_delta < 1e-4
    assert rep.artifacts["fp16"].passed
    imgs = real_images(2) + fake_images(2)
    # a ViT graph on CPU gets dynamic INT8 (static QDQ did not speed ViTs up here)
    q = rep.artifacts["int8"]
    assert q.int8 is not None and q.int8.scheme == "dynamic" and q.agreement is not None
    assert q.passed
    onnx = __import__("onnx")
    ops = {n.op_type for n in onnx.load(str(out / "pixel" / "model.int8.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    # both graphs are standard ONNX (plus ORT's integer MatMul ops in INT8), and neither re-interpolates the
    # position embeddings for the bundle's fixed input size
    fp32_nodes = onnx.load(str(out / "pixel" / "model.fp32.onnx")).graph.node
    assert all(n.domain in ("", "ai.onnx") for n in fp32_nodes)
    assert "Resize" not in ops and not any(n.op_type == "Resize" for n in fp32_nodes)
    p8 = np.array([Detector(out, pixel_precision="int8").detect(p).pixel.probability for p in imgs])
    np.testing.assert_allclose(p8, probs_torch(model, imgs), atol=0.05)
    det = Detector(out, pixel_precision="fp32")
    got = np.array([det.detect(p).pixel.probability for p in imgs])
    np.testing.assert_allclose(got, probs_torch(model, imgs), atol=1e-4)


def test_dda_checkpoint_with_lora_merges_and_matches(tmp_path, collection):
    model = tiny_dinov2()
    hub = {f"backbone.{k}": v for k, v in to_hub(model).items()}
    g = torch.Generator().manual_seed(1)
    rank, alpha = 8, 1.0
    expected = tiny_dinov2()  # same weights; LoRA deltas are added below, in transformers naming
    esd = expected.backbone.state_dict()
    for i in range(2):
        for mod, shape in [("attn.qkv", (192, 64)), ("attn.proj", (64, 64)), ("mlp.fc1", (256, 64)), ("mlp.fc2", (64, 256))]:
            key = f"backbone.blocks.{i}.{mod}"
            a = torch.randn(rank, shape[1], generator=g) * 0.5
            b = torch.randn(shape[0], rank, generator=g) * 0.5
            hub[f"{key}.base_layer.weight"] = hub.pop(f"{key}.weight")  # peft naming
            hub[f"{key}.lora_A.default.weight"], hub[f"{key}.lora_B.default.weight"] = a, b
            delta = (alpha / rank) * (b @ a)
            h = f"encoder.layer.{i}."
            if mod == "attn.qkv":
                for j, n in enumerate(("query", "key", "value")):
                    esd[h + f"attention.attention.{n}.weight"] += delta[64 * j:64 * (j + 1)]
            else:
                tgt = {"attn.proj": "attention.output.dense", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}[mod]
                esd[h + tgt + ".weight"] += delta
    expected.backbone.load_state_dict(esd)
    hub["head.weight"], hub["head.bias"] = model.head.weight.detach(), model.head.bias.detach()
    ckpt = tmp_path / "dda.pth"
    torch.save(hub, ckpt)

    loaded = load_dda(ckpt)
    imgs = real_images(2) + fake_images(2)
    np.testing.assert_allclose(probs_torch(loaded, imgs), probs_torch(expected, imgs), atol=1e-5)
    out = tmp_path / "bundle"
    rep = export_pixel(PixelExportConfig(arch="dda", weights=str(ckpt), out=out, input=SPEC, precisions=("fp32",),
                                         val=str(collection)))
    assert rep.artifacts["fp32"].max_abs_delta < 1e-4
    det = Detector(out)
    got = np.array([det.detect(p).pixel.probability for p in imgs])
    np.testing.assert_allclose(got, probs_torch(expected, imgs), atol=1e-4)


def test_lora_merge_rules():
    w = torch.zeros(4, 3)
    a, b = torch.ones(2, 3), torch.ones(4, 2)
    out = merge_lora({"x.weight": w, "x.lora_A.weight": a, "x.lora_B.weight": b}, alpha=1.0)
    assert torch.allclose(out["x.weight"], torch.full((4, 3), 1.0))  # 1/2 * (B @ A) = 1/2 * 2
    with pytest.raises(ExportError, match="incomplete"):
        merge_lora({"x.weight": w, "x.lora_A.weight": a})


def test_not_a_dinov2_checkpoint():
    with pytest.raises(ExportError):
        hub_to_hf({"foo": torch.zeros(1)})


def test_int8_scheme_follows_the_graph(tmp_path, ladeda_bundle):
    """MatMul-dominated graphs (ViTs) quantize dynamically on CPU; CNNs and every TensorRT target stay static QDQ."""
    from aligngemini_sdk.export.pixel import export_onnx
    from aligngemini_sdk.export.quantize import int8_scheme

    vit = tmp_path / "vit.onnx"
    export_onnx(tiny_dinov2(), vit, SPEC)
    assert int8_scheme(vit) == "dynamic"
    assert int8_scheme(vit, target="tensorrt") == "static"
    cnn = next((ladeda_bundle / "pixel").glob("model.fp32.onnx"))
    assert int8_scheme(cnn) == "static"
