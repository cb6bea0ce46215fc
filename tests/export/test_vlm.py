"""VLM export end to end: tiny Gemma3 and tiny Qwen2.5-VL (random weights, tokenizers trained here) -> llama.cpp's
own converter -> Q4_K_M text + f16 mmproj -> parity gate -> Detector with both branches."""

import json
import shutil

import pytest

from aligngemini_sdk import Bundle, Detector, DetectorOptions
from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.export.parity import ParityReport
from aligngemini_sdk.export.vlm import QUANT_TYPES, VlmExportConfig, build_prompt, export_vlm, read_arch
from tests.conftest import fake_images, real_images

pytestmark = [pytest.mark.gguf, pytest.mark.shared_data]
pytest.importorskip("llama_cpp", reason="needs the [gguf] extra (llama-cpp-python)")


def check_two_branch(bundle_dir, arch):
    m = Bundle.open(bundle_dir).manifest
    assert m.semantic.arch == arch and m.semantic.artifacts["q4_k_m"].precision == "Q4_K_M"
    assert m.semantic.artifacts["q4_k_m"].files["mmproj"].path.endswith("mmproj.f16.gguf")
    parity = m.semantic.validation["parity"]
    assert ParityReport.from_dict(parity).to_dict() == parity  # the typed report is the JSON the manifest keeps
    assert parity["passed"] and parity["types"]["F16"]["max_abs_delta"] <= 1e-3
    assert parity["types"]["Q8_0"]["max_abs_delta"] <= 1e-2 and "Q4_K_M" in parity["types"]
    det = Detector(bundle_dir, DetectorOptions(device="cpu"))
    import dataclasses

    m.pixel = dataclasses.replace(m.pixel, threshold=1.0)  # pixel says real: the VLM must run under OR
    r = det.detect(fake_images(1)[0])
    assert r.semantic.ran and 0 < r.semantic.probability < 1 and r.semantic.ms > 0
    assert r.is_fake == (r.semantic.probability > m.semantic.threshold)
    assert r.score == max(r.pixel.probability, r.semantic.probability)
    return r


def test_gemma3_two_branch_bundle(two_branch_bundle):
    check_two_branch(two_branch_bundle, "gemma3")
    prompt = Bundle.open(two_branch_bundle).manifest.semantic.prompt["text"]
    assert prompt.startswith("<start_of_turn>user\n{image}") and prompt.endswith("<start_of_turn>model\n")


def test_qwen25vl_two_branch_bundle(tmp_path, ladeda_bundle):
    from aligngemini_sdk.export.tiny import build_tiny_qwen25vl

    hf = build_tiny_qwen25vl(tmp_path / "tiny-qwen")
    out = tmp_path / "bundle"
    shutil.copytree(ladeda_bundle, out)
    export_vlm(VlmExportConfig(hf=hf, out=out, quants=("Q4_K_M",), parity_images=real_images(2) + fake_images(2),
                               n_ctx=512))
    check_two_branch(out, "qwen2.5-vl")
    assert "<|vision_start|>" not in Bundle.open(out).manifest.semantic.prompt["text"]  # mtmd adds its own


def test_unsupported_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ExportError, match="not supported"):
        read_arch(tmp_path)


def test_prompt_comes_from_the_models_chat_template(tiny_gemma3):
    p = build_prompt(tiny_gemma3, "Real or fake?")
    assert "{image}" in p and "Real or fake?" in p and not p.startswith("<bos>")


def test_required_quant_types_are_known():
    assert {"Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M"} <= set(QUANT_TYPES)
