"""What a real semantic VLM costs on this CPU: random-weight models with real architectures' shapes.

    .venv/bin/python benchmarks/vlm_shapes.py [--arch qwen2.5-vl-3b,...] [--threads 1,2] [--runs 3]
                                              [--out benchmarks/reports/vlm_shapes]

For each architecture (Qwen2.5-VL-3B, Qwen2.5-VL-7B, Gemma3-4B, SmolVLM-256M; widths, heads, vocabularies and image
sizes of the published configs), three truncated random-weight models are built locally (no hub), converted by
llama.cpp's own converter (text Q4_K_M, projector f16, as ``aligngemini export vlm`` ships them) and run through the
SDK's llama.cpp runtime on a real photo, as ``detect()`` runs them: ``A`` = (t1 text layers, v1 vision layers),
``B`` = (t1, v2), ``C`` = (t2, v1). The runtime splits each call into the *vision tower* (``mtmd_encode_chunk``),
the *LLM over the image tokens* and the *LLM over the question* after the image. Linear in depth:

    vision  = vision_A  + (vision_B - vision_A)   / (v2 - v1) * (V - v1)
    prefill = prefill_A + (prefill_C - prefill_A) / (t2 - t1) * (T - t1)      (the same for the question)

Threads are swept (``--threads``). Output ``<cpu>-<kind>.json`` / ``.md`` / ``.png`` and ``<cpu>-<kind>.profile.json``: the
extrapolated p50/p90 per thread count in the manifest's ``device_profiles`` format (this machine's device keys,
``semantic/q4_k_m``), which a vendor can put into a bundle so the budget planner predicts the real VLM's cost
before it has measured it. Figures are this CPU's, named in the report; random weights cost what trained ones do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aligngemini_sdk.plot import figure

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "data" / "images" / "real" / "kodak24"
QUESTION = "Is this image real or AI-generated? Answer with one word: real or fake."


@dataclass(frozen=True)
class Shape:
    """A published VLM's shape: full depths, the truncated depths measured, and its text/vision configs."""

    name: str
    family: str                     # "qwen2.5-vl", "gemma3", "idefics3"
    text_layers: int
    vision_layers: int
    text_depths: tuple[int, int]
    vision_depths: tuple[int, int]
    text: dict[str, Any]
    vision: dict[str, Any]
    image_side: int                 # what the projector sees of a photo (the SDK downsizes to 448; Gemma3 to 896)


QWEN_VISION = {"hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "patch_size": 14,
               "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112, "in_chans": 3,
               "hidden_act": "silu"}
SHAPES = {
    "qwen2.5-vl-3b": Shape("Qwen2.5-VL-3B", "qwen2.5-vl", 36, 32, (1, 2), (8, 16),
                           {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008,
                            "num_attention_heads": 16, "num_key_value_heads": 2, "tie_word_embeddings": True},
                           {**QWEN_VISION, "out_hidden_size": 2048}, 448),
    "qwen2.5-vl-7b": Shape("Qwen2.5-VL-7B", "qwen2.5-vl", 28, 32, (1, 2), (8, 16),
                           {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
                            "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False},
                           {**QWEN_VISION, "out_hidden_size": 3584}, 448),
    "gemma3-4b": Shape("Gemma3-4B", "gemma3", 34, 27, (1, 2), (1, 2),
                       {"vocab_size": 262208, "hidden_size": 2560, "intermediate_size": 10240,
                        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
                        "query_pre_attn_scalar": 256, "sliding_window": 1024},
                       {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16,
                        "image_size": 896, "patch_size": 14}, 896),
    "smolvlm-256m": Shape("SmolVLM-256M", "idefics3", 30, 12, (1, 2), (1, 2),
                          {"vocab_size": 49280, "hidden_size": 576, "intermediate_size": 1536,
                           "num_attention_heads": 9, "num_key_value_heads": 3, "tie_word_embeddings": True},
                          {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                           "image_size": 512, "patch_size": 16}, 512),
}


@dataclass
class Measured:
    text_layers: int
    vision_layers: int
    threads: int
    vision_ms: float     # the vision tower (mtmd_encode_chunk)
    prefill_ms: float    # the LLM over the image tokens
    prompt_ms: float     # the LLM over the text after the image
    total_ms: float
    image_tokens: int


@dataclass
class ArchResult:
    key: str
    name: str
    text_layers: int
    vision_layers: int
    text_gguf_mb_per_layer: float
    measured: list[Measured] = field(default_factory=list)
    #: threads -> {"image_ms", "prompt_ms", "total_ms", "vision_ms_per_layer", "text_ms_per_layer_image", ...}
    extrapolated: dict[int, dict[str, float]] = field(default_factory=dict)


# -- building truncated random-weight models -------------------------------------------------------------------
def build(shape: Shape, text_layers: int, vision_layers: int, out: Path) -> Path:
    import torch

    from aligngemini_sdk.export.tiny import randomize_and_save

    torch.manual_seed(0)
    torch.set_default_dtype(torch.float16)
    try:
        builder = {"qwen2.5-vl": _qwen, "gemma3": _gemma3, "idefics3": _idefics3}[shape.family]
        model = builder(shape, text_layers, vision_layers, out)
        randomize_and_save(model, out, std=0.02)
    finally:
        torch.set_default_dtype(torch.float32)
    if shape.family == "idefics3":
        from aligngemini_sdk.export.tiny import write_idefics3_config

        write_idefics3_config(out)
    else:
        cfg = json.loads((out / "config.json").read_text())
        cfg["architectures"] = [type(model).__name__]
        (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


def _tokenizer(out: Path, specials: list[str], template: str, bos: str | None, eos: str, pad: str,
               newline: bool = False) -> Any:
    import sentencepiece as spm

    from aligngemini_sdk.export.tiny import train_sentencepiece, write_tokenizer_files

    train_sentencepiece(out, specials, vocab_size=320 + len(specials), bos=bos or "<|im_start|>", eos=eos, pad=pad,
                        newline=newline)
    write_tokenizer_files(out, specials, template, bos, eos, pad)
    return spm.SentencePieceProcessor(model_file=os.fspath(out / "tokenizer.model"))


def _qwen(shape: Shape, t: int, v: int, out: Path) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from aligngemini_sdk.export.tiny import QWEN_SPECIALS, QWEN_TEMPLATE

    sp = _tokenizer(out, QWEN_SPECIALS, QWEN_TEMPLATE, None, "<|im_end|>", "<|endoftext|>")
    text = {**shape.text, "num_hidden_layers": t, "max_position_embeddings": 32768, "rope_theta": 1e6,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}}
    vision = {**shape.vision, "depth": v, "fullatt_block_indexes": list(range(7, v, 8))}  # every 8th, as published
    cfg = Qwen2_5_VLConfig(text_config=text, **text, vision_config=vision,
                           image_token_id=sp.piece_to_id("<|image_pad|>"), video_token_id=sp.piece_to_id("<|video_pad|>"),
                           vision_start_token_id=sp.piece_to_id("<|vision_start|>"),
                           vision_end_token_id=sp.piece_to_id("<|vision_end|>"),
                           bos_token_id=sp.piece_to_id("<|im_start|>"), eos_token_id=sp.piece_to_id("<|im_end|>"),
                           pad_token_id=sp.piece_to_id("<|endoftext|>"))
    from aligngemini_sdk.export.tiny import qwen2vl_preprocessor

    (out / "preprocessor_config.json").write_text(json.dumps(qwen2vl_preprocessor(max_pixels=12845056)))
    return Qwen2_5_VLForConditionalGeneration(cfg).eval()


def _gemma3(shape: Shape, t: int, v: int, out: Path) -> Any:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    from aligngemini_sdk.export.tiny import GEMMA3_SPECIALS, GEMMA3_TEMPLATE

    sp = _tokenizer(out, GEMMA3_SPECIALS, GEMMA3_TEMPLATE, "<bos>", "<eos>", "<pad>")
    text = {**shape.text, "num_hidden_layers": t, "max_position_embeddings": 32768, "rope_theta": 1e6,
            "rope_local_base_freq": 10000.0,
            "layer_types": ["sliding_attention" if (k + 1) % 6 else "full_attention" for k in range(t)]}
    cfg = Gemma3Config(text_config=text, vision_config={**shape.vision, "num_hidden_layers": v,
                                                        "vision_use_head": False},
                       mm_tokens_per_image=256, boi_token_index=sp.piece_to_id("<start_of_image>"),
                       eoi_token_index=sp.piece_to_id("<end_of_image>"),
                       image_token_index=sp.piece_to_id("<image_soft_token>"), pad_token_id=0, bos_token_id=2,
                       eos_token_id=1)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Gemma3ImageProcessor", "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "image_seq_length": 256, "size": {"height": 896, "width": 896}, "do_resize": True, "do_normalize": True,
        "do_rescale": True, "rescale_factor": 1 / 255, "resample": 2}))
    return Gemma3ForConditionalGeneration(cfg).eval()


def _idefics3(shape: Shape, t: int, v: int, out: Path) -> Any:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration

    from aligngemini_sdk.export.tiny import idefics3_tokenizer

    sp = idefics3_tokenizer(out)
    text = {**shape.text, "num_hidden_layers": t, "max_position_embeddings": 8192, "rope_theta": 100000.0,
            "model_type": "llama"}
    cfg = Idefics3Config(text_config=text, vision_config={**shape.vision, "num_hidden_layers": v}, scale_factor=4,
                         image_token_id=sp.piece_to_id("<image>"), tie_word_embeddings=True)
    return Idefics3ForConditionalGeneration(cfg).eval()


# -- converting and measuring ------------------------------------------------------------------------------------
def convert(hf: Path, work: Path) -> tuple[Path, Path]:
    from aligngemini_sdk.export.vlm import converter_dir, quantize_gguf, run_converter

    conv = converter_dir()
    f16, q4, mmproj = work / "text-f16.gguf", work / "text-q4_k_m.gguf", work / "mmproj-f16.gguf"
    run_converter(conv, hf, f16, "f16")
    run_converter(conv, hf, mmproj, "f16", mmproj=True)
    quantize_gguf(f16, q4, "Q4_K_M")
    f16.unlink()
    return q4, mmproj


def measure(hf: Path, q4: Path, mmproj: Path, threads: int, runs: int, rgb: np.ndarray) -> dict[str, float]:
    from aligngemini_sdk.export.vlm import build_prompt
    from aligngemini_sdk.manifest import SemanticBranchSpec
    from aligngemini_sdk.runtimes.llama import LlamaSemantic

    spec = SemanticBranchSpec(artifacts={}, default_artifact="q4_k_m", prompt={"text": build_prompt(hf, QUESTION)},
                              labels={"fake": ["fake"], "real": ["real"]}, n_ctx=2048, image_max_side=448)
    rt = LlamaSemantic(q4, mmproj, spec, artifact="q4_k_m", threads=threads)
    try:
        tokens = sum(n for kind, n in rt.prompt_layout(rt.fit(rgb)) if kind == "image")
        rt.predict_one(rgb)  # warm-up (also fills the reusable prefix cache, as in detect())
        timings = []
        for _ in range(runs):
            rt.predict_one(rgb)
            timings.append(dict(rt.last_timing))
    finally:
        rt.close()
    med = {k: statistics.median(t[k] for t in timings) for k in ("vision_ms", "image_ms", "prompt_ms", "total_ms")}
    return {"vision_ms": med["vision_ms"], "prefill_ms": med["image_ms"] - med["vision_ms"],
            "prompt_ms": med["prompt_ms"], "total_ms": med["total_ms"], "image_tokens": float(tokens)}


def extrapolate(shape: Shape, rows: list[Measured], threads: int) -> dict[str, float]:
    (t1, t2), (v1, v2) = shape.text_depths, shape.vision_depths
    by = {(m.text_layers, m.vision_layers): m for m in rows if m.threads == threads}
    a, b, c = by[(t1, v1)], by[(t1, v2)], by[(t2, v1)]
    per_vision = (b.vision_ms - a.vision_ms) / (v2 - v1)
    per_prefill = (c.prefill_ms - a.prefill_ms) / (t2 - t1)
    per_prompt = (c.prompt_ms - a.prompt_ms) / (t2 - t1)
    vision = a.vision_ms + per_vision * (shape.vision_layers - v1)
    prefill = a.prefill_ms + per_prefill * (shape.text_layers - t1)
    prompt = a.prompt_ms + per_prompt * (shape.text_layers - t1)
    total = vision + prefill + prompt
    return {"vision_ms": vision, "prefill_ms": prefill, "prompt_ms": prompt, "total_ms": total,
            "vision_ms_per_layer": per_vision, "prefill_ms_per_text_layer": per_prefill,
            "prompt_ms_per_text_layer": per_prompt, "vision_share": vision / total}


def run_arch(key: str, threads: list[int], runs: int, rgb: np.ndarray) -> ArchResult:
    shape = SHAPES[key]
    (t1, t2), (v1, v2) = shape.text_depths, shape.vision_depths
    res = ArchResult(key, shape.name, shape.text_layers, shape.vision_layers, 0.0)
    sizes = {}
    for t, v in ((t1, v1), (t1, v2), (t2, v1)):
        with tempfile.TemporaryDirectory() as tmp:
            print(f"[vlm_shapes] {shape.name}: {t} text / {v} vision layers: building", flush=True)
            hf = build(shape, t, v, Path(tmp) / "hf")
            q4, mmproj = convert(hf, Path(tmp))
            sizes[t] = q4.stat().st_size / 1e6
            for n in threads:
                m = measure(hf, q4, mmproj, n, runs, rgb)
                res.measured.append(Measured(t, v, n, m["vision_ms"], m["prefill_ms"], m["prompt_ms"], m["total_ms"],
                                             int(m["image_tokens"])))
                print(f"[vlm_shapes]   {n} thread(s): vision {m['vision_ms']:.0f} ms, image prefill "
                      f"{m['prefill_ms']:.0f} ms, prompt {m['prompt_ms']:.0f} ms ({m['image_tokens']:.0f} image "
                      "tokens)", flush=True)
    res.text_gguf_mb_per_layer = (sizes[t2] - sizes[t1]) / (t2 - t1)
    res.extrapolated = {n: extrapolate(shape, res.measured, n) for n in threads}
    return res


# -- report ------------------------------------------------------------------------------------------------------
def to_markdown(cpu: str, features: list[str], results: list[ArchResult], runs: int) -> str:
    lines = [f"# Semantic VLMs of real shape on {cpu}", "",
             f"CPU features: {' '.join(features)}. Text Q4_K_M, projector f16, through the SDK's llama.cpp runtime; "
             f"medians of {runs} runs after a warm-up; {time.strftime('%Y-%m-%d')}.", "",
             "## Extrapolated to the full depth (seconds per image)", "",
             "| model | layers text/vision | image tokens | threads | vision tower s | LLM over image tokens s | "
             "LLM over the question s | total s | vision share |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        tokens = r.measured[0].image_tokens if r.measured else 0
        for n, e in sorted(r.extrapolated.items()):
            lines.append(f"| {r.name} | {r.text_layers}/{r.vision_layers} | {tokens} | {n} | "
                         f"{e['vision_ms'] / 1e3:.1f} | {e['prefill_ms'] / 1e3:.1f} | {e['prompt_ms'] / 1e3:.2f} | "
                         f"{e['total_ms'] / 1e3:.1f} | {100 * e['vision_share']:.0f} % |")
    lines += ["", "## Measured (truncated models, ms)", "",
              "| model | text layers | vision layers | threads | vision ms | image prefill ms | prompt ms | total ms |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for m in r.measured:
            lines.append(f"| {r.name} | {m.text_layers} | {m.vision_layers} | {m.threads} | {m.vision_ms:.0f} | "
                         f"{m.prefill_ms:.0f} | {m.prompt_ms:.0f} | {m.total_ms:.0f} |")
    return "\n".join(lines) + "\n"


def device_profile(results: list[ArchResult]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Per model, the extrapolated cost in the manifest's ``device_profiles`` format (p90 = p50: an estimate)."""
    from aligngemini_sdk.device import device_key

    return {r.key: {device_key("cpu", n): {"semantic/q4_k_m": {"p50_ms": round(e["total_ms"], 1),
                                                      "p90_ms": round(e["total_ms"], 1), "n": 0}}
                    for n, e in r.extrapolated.items()} for r in results}


def plot(cpu: str, results: list[ArchResult], path: Path) -> None:
    labels, vision, prefill, prompt = [], [], [], []
    for r in results:
        for n, e in sorted(r.extrapolated.items()):
            labels.append(f"{r.name}\n{n} thread{'s' if n > 1 else ''}")
            vision.append(e["vision_ms"] / 1e3)
            prefill.append(e["prefill_ms"] / 1e3)
            prompt.append(e["prompt_ms"] / 1e3)
    with figure(path, dpi=110, figsize=(max(6, 1.3 * len(labels)), 4.5)) as ax:
        ax.bar(labels, vision, label="vision tower")
        ax.bar(labels, prefill, bottom=vision, label="LLM over the image tokens")
        ax.bar(labels, prompt, bottom=[v + p for v, p in zip(vision, prefill)], label="LLM over the question")
        ax.axhline(1.5, color="red", ls="--", lw=1, label="power='balanced' cap (1.5 s p90)")
        ax.set_ylabel("seconds per image (extrapolated)")
        ax.set_yscale("log")
        ax.set_title(f"Semantic VLM cost per image on {cpu}")
        ax.legend(fontsize=8)
        ax.tick_params(axis="x", labelsize=8)


def reused(path: Path, measuring: set[str]) -> dict[str, ArchResult]:
    """Results of an earlier run on this CPU for the architectures not measured now (``--reuse``)."""
    if not path.is_file():
        return {}
    out = {}
    for raw in json.loads(path.read_text())["results"]:
        if raw["key"] not in measuring:
            r = ArchResult(**{**raw, "measured": [Measured(**m) for m in raw["measured"]],
                              "extrapolated": {int(k): v for k, v in raw["extrapolated"].items()}})
            out[r.key] = r
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default=",".join(SHAPES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help="keep the other architectures' results from the last run "
                                                         "on this CPU (re-measure only --arch)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "vlm_shapes"))
    args = ap.parse_args()
    from aligngemini_sdk.device import cpu_info, report_stem

    cpu = cpu_info()
    rgb = cv2.imread(str(sorted(PHOTO.glob("*.png"))[0]), cv2.IMREAD_COLOR_RGB)
    assert rgb is not None, f"no photo under {PHOTO}"
    threads = [int(x) for x in args.threads.split(",")]
    name = str(cpu.get("model", "?"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = report_stem()
    measured = {k: run_arch(k, threads, args.runs, rgb) for k in args.arch.split(",")}
    kept = reused(out / f"{stem}.json", set(measured)) if args.reuse else {}
    results = [r for k in SHAPES if (r := measured.get(k) or kept.get(k)) is not None]
    (out / f"{stem}.json").write_text(json.dumps({"cpu": name, "features": cpu.get("features", []),
                                                  "runs": args.runs, "results": [asdict(r) for r in results]},
                                                 indent=2))
    (out / f"{stem}.profile.json").write_text(json.dumps(device_profile(results), indent=2))
    md = to_markdown(name, list(cpu.get("features", [])), results, args.runs)
    (out / f"{stem}.md").write_text(md)
    plot(name, results, out / f"{stem}.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
