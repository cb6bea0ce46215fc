"""Export the semantic-branch VLM to GGUF (text model, quantized) + mmproj (vision projector), with a
parity gate against the transformers model.

    aligngemini export vlm --hf DIR [--lora DIR] --quant Q4_K_M [--mmproj-type f16|q8_0] --out BUNDLE

llama.cpp's HF->GGUF converter is not in the llama-cpp-python wheel; it ships in the matching sdist
(``vendor/llama.cpp/convert_hf_to_gguf.py`` + ``conversion/`` + its own ``gguf-py``). We fetch that sdist
through pip once, unpack only those parts into the cache, and run the converter as a subprocess with
its own gguf-py first on the path. ``--llama-cpp DIR`` uses a llama.cpp checkout instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aligngemini_sdk import __version__
from aligngemini_sdk.cache import default_cache_dir
from aligngemini_sdk.errors import ExportError, GateFailedError
from aligngemini_sdk.export.bundle_writer import file_entry, put_branch
from aligngemini_sdk.export.parity import ParityEntry, ParityReport, print_parity_table
from aligngemini_sdk.extras import require
from aligngemini_sdk.manifest import Artifact, SemanticBranchSpec
from aligngemini_sdk.progress import log_step

QUANT_TYPES = {  # name -> llama_ftype
    "F32": 0, "F16": 1, "Q8_0": 7, "Q6_K": 18, "Q5_K_M": 17, "Q5_K_S": 16, "Q4_K_M": 15, "Q4_K_S": 14,
    "Q4_0": 2, "Q3_K_M": 12, "Q2_K": 10,
}
SUPPORTED_ARCHS = {"Gemma3ForConditionalGeneration": "gemma3", "Qwen2_5_VLForConditionalGeneration": "qwen2.5-vl",
                   "Qwen2VLForConditionalGeneration": "qwen2-vl"}
#: how each family's chat template writes the image; replaced by the mtmd media marker in the manifest.
IMAGE_PLACEHOLDERS = ("<|vision_start|><|image_pad|><|vision_end|>", "<start_of_image>", "<image>", "<|image|>")
DEFAULT_QUESTION = "Is this image real or AI-generated? Answer with one word: real or fake."


@dataclass
class VlmExportConfig:
    hf: Path
    out: Path
    lora: Path | None = None
    quants: tuple[str, ...] = ("Q4_K_M",)
    mmproj_type: str = "f16"
    imatrix: Path | None = None
    llama_cpp: Path | None = None
    question: str = DEFAULT_QUESTION
    labels: dict[str, list[str]] = field(default_factory=lambda: {"fake": ["fake"], "real": ["real"]})
    n_ctx: int = 1024
    threshold: float = 0.5
    parity_images: list[Path] = field(default_factory=list)
    parity_n: int = 4
    tol_f16: float = 1e-3
    tol_q8: float = 1e-2
    keep_reference: bool = False
    name: str | None = None


# -- the converter ------------------------------------------------------------------------------------------
def converter_dir(llama_cpp: str | os.PathLike[str] | None = None) -> Path:
    """A directory holding ``convert_hf_to_gguf.py`` (+ ``gguf-py``) matching the installed llama-cpp-python."""
    if llama_cpp:
        d = Path(llama_cpp)
        if not (d / "convert_hf_to_gguf.py").is_file():
            raise ExportError(f"--llama-cpp {d}: no convert_hf_to_gguf.py there")
        return d
    llama_cpp_mod = require("llama_cpp", "VLM export (llama.cpp's quantizer)")
    version = llama_cpp_mod.__version__
    dest = default_cache_dir() / "llama-cpp-converter" / version
    if (dest / "convert_hf_to_gguf.py").is_file():
        return dest
    sdist = _find_sdist(version)
    log_step(f"unpacking llama.cpp's converter from {sdist.name}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".conv-", dir=dest.parent))  # same filesystem: os.replace is atomic
    try:
        with tarfile.open(sdist) as tf:
            for m in tf.getmembers():
                parts = Path(m.name).parts
                if len(parts) < 4 or parts[1:3] != ("vendor", "llama.cpp"):
                    continue
                rel = Path(*parts[3:])
                if not (rel.parts[0] in ("conversion", "gguf-py") or rel.name == "convert_hf_to_gguf.py"):
                    continue
                if not m.isfile() or ".." in rel.parts:
                    continue
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(m)
                assert src is not None
                with src, open(target, "wb") as fh:
                    shutil.copyfileobj(src, fh)
        try:
            os.replace(tmp, dest)
        except OSError:  # another process unpacked it first
            if not (dest / "convert_hf_to_gguf.py").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _find_sdist(version: str) -> Path:
    """The llama-cpp-python sdist: $ALIGNGEMINI_LLAMA_SDIST, the cache, or ``pip download`` (registry only)."""
    env = os.environ.get("ALIGNGEMINI_LLAMA_SDIST")
    if env and Path(env).is_file():
        return Path(env)
    recorded = Path(sys.prefix) / "etc" / "llama_cpp_sdist"  # written by setup.sh
    if recorded.is_file() and (path := Path(recorded.read_text().strip())).is_file():
        return path
    cache = default_cache_dir() / "sdist"
    name = f"llama_cpp_python-{version}.tar.gz"
    if (cache / name).is_file():
        return cache / name
    cache.mkdir(parents=True, exist_ok=True)
    log_step(f"downloading the llama-cpp-python {version} sdist through pip (once; it carries the converter)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
           f"llama-cpp-python=={version}", "-d", os.fspath(cache)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not (cache / name).is_file():
        raise ExportError(f"could not fetch the llama-cpp-python {version} sdist with pip "
                          f"(pass --llama-cpp DIR or set ALIGNGEMINI_LLAMA_SDIST): {r.stderr.strip()[-400:]}")
    return cache / name


_BOOTSTRAP = """
import sys, runpy
conv = sys.argv.pop(1)
sys.path[:0] = [conv, conv + '/gguf-py']
sys.argv[0] = conv + '/convert_hf_to_gguf.py'
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def run_converter(conv: Path, model_dir: Path, outfile: Path, outtype: str, mmproj: bool = False) -> None:
    """Run llama.cpp's converter; a refusal raises ExportError carrying the converter's own reason."""
    args = [sys.executable, "-c", _BOOTSTRAP, os.fspath(conv), os.fspath(model_dir), "--outfile",
            os.fspath(outfile), "--outtype", outtype]
    if mmproj:
        args.append("--mmproj")
    log_step(f"converting {'vision projector' if mmproj else 'text model'} -> {outfile.name} ({outtype})")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "NO_LOCAL_GGUF": "", "PYTHONUNBUFFERED": "1"})
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = [*tail, line.rstrip()][-40:]
        if "Writing" in line or "successfully exported" in line:
            sys.stderr.write("  " + line.strip().split("\r")[-1][:140] + "\n")
    if proc.wait() != 0 or not outfile.is_file():
        reason = next((t for t in reversed(tail) if "Error" in t or "error" in t or "not supported" in t), tail[-1] if tail else "")
        raise ExportError(f"llama.cpp's converter refused {model_dir.name}: {reason}")


def quantize_gguf(src: Path, dst: Path, qtype: str, imatrix: Path | None = None) -> None:
    llama_cpp = require("llama_cpp", "GGUF quantization")
    q = qtype.upper()
    if q not in QUANT_TYPES:
        raise ExportError(f"unknown quantization {qtype!r}; known: {', '.join(QUANT_TYPES)}")
    if imatrix is not None:
        raise ExportError("--imatrix is not supported by llama-cpp-python's quantize binding in this version; "
                          "quantize with llama.cpp's llama-quantize --imatrix and pass the GGUF via --gguf")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[q]
    params.nthread = os.cpu_count() or 1
    log_step(f"quantizing text model -> {q}")
    from aligngemini_sdk.runtimes.llama import quiet_llama_logs

    quiet_llama_logs()
    rc = llama_cpp.llama_model_quantize(os.fspath(src).encode(), os.fspath(dst).encode(), params)
    if rc != 0 or not dst.is_file():
        raise ExportError(f"llama.cpp quantization to {q} failed (code {rc})")


# -- model preparation --------------------------------------------------------------------------------------
def read_arch(hf: Path) -> str:
    cfg = json.loads((hf / "config.json").read_text())
    arches = cfg.get("architectures") or cfg.get("text_config", {}).get("architectures") or []
    arch = arches[0] if arches else cfg.get("model_type", "?")
    if arch not in SUPPORTED_ARCHS:
        raise ExportError(f"architecture {arch!r} is not supported for the semantic branch "
                          f"(supported: {', '.join(SUPPORTED_ARCHS)})")
    return arch


def merge_lora(hf: Path, lora: Path, out: Path) -> Path:
    """Merge a peft LoRA adapter into the base model (fp32) and save a complete HF directory."""
    peft = require("peft", "merging a LoRA adapter")
    transformers = require("transformers")
    arch = read_arch(hf)
    cls = getattr(transformers, arch)
    log_step(f"merging LoRA adapter {lora.name} into {hf.name}")
    base = cls.from_pretrained(hf, dtype="float32")
    merged = peft.PeftModel.from_pretrained(base, lora).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    for f in hf.iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".bin")) and f.name not in ("config.json",
                                                                                           "model.safetensors.index.json"):
            shutil.copy2(f, out / f.name)
    cfg = json.loads((out / "config.json").read_text())
    cfg["architectures"] = [arch]
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


def build_prompt(hf: Path, question: str) -> str:
    """The chat-formatted prompt with ``{image}`` where the image goes, from the model's own template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if tok.bos_token and text.startswith(tok.bos_token):
        text = text[len(tok.bos_token):]  # llama.cpp adds BOS itself when the vocab asks for it
    for ph in IMAGE_PLACEHOLDERS:
        if ph in text:
            return text.replace(ph, "{image}", 1)
    raise ExportError("the chat template did not place an image; cannot build the prompt")


# -- parity gate --------------------------------------------------------------------------------------------
def parity_images(cfg: VlmExportConfig, size: int) -> list[np.ndarray]:
    """Images for the parity gate, centre-cropped/resized to the projector's native size so neither side
    resamples differently (llama.cpp and transformers resize with different kernels)."""
    import cv2

    from aligngemini_sdk.image import load_image
    from aligngemini_sdk.preprocess import center_crop

    imgs = []
    for p in cfg.parity_images[: cfg.parity_n]:
        rgb = load_image(p).rgb
        s = min(rgb.shape[:2])
        rgb = center_crop(rgb, s, s)
        imgs.append(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA))
    rng = np.random.default_rng(0)
    while len(imgs) < cfg.parity_n:
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        imgs.append(cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC))
    return imgs


def _vision_size(hf: Path, arch: str) -> int:
    cfg = json.loads((hf / "config.json").read_text())
    if arch.startswith("Gemma3"):
        return int(cfg["vision_config"]["image_size"])
    return 224  # Qwen2-VL family: any multiple of 28 inside min/max pixels; 224 = 8x8 merged tokens


def hf_probability(model: Any, arch: str, layout: list[tuple[str, Any]], rgb: np.ndarray, hf: Path,
                   fake_ids: list[int], real_ids: list[int]) -> float:
    """P(fake) from the transformers model on *exactly* llama.cpp's token layout (text ids + image slots)."""
    import torch

    from aligngemini_sdk.runtimes.llama import restricted_softmax_fake

    cfg = json.loads((hf / "config.json").read_text())
    pp = json.loads((hf / "preprocessor_config.json").read_text())
    mean, std = np.asarray(pp["image_mean"], np.float32), np.asarray(pp["image_std"], np.float32)
    x = (rgb.astype(np.float32) / 255.0 - mean) / std
    ids: list[int] = []
    image_token = cfg.get("image_token_id", cfg.get("image_token_index"))
    for kind, val in layout:
        ids.extend(val if kind == "text" else [image_token] * int(val))
    input_ids = torch.tensor([ids])
    kw: dict[str, Any] = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    if arch.startswith("Gemma3"):
        kw["pixel_values"] = torch.from_numpy(x.transpose(2, 0, 1))[None]
        kw["token_type_ids"] = (input_ids == image_token).long()
    else:  # Qwen2-VL family: flattened (grid_t * grid_h * grid_w, C * T * P * P) patches, merge-order
        p, m, t = pp.get("patch_size", 14), pp.get("merge_size", 2), pp.get("temporal_patch_size", 2)
        h, w = x.shape[:2]
        gh, gw = h // p, w // p
        chw = np.repeat(x.transpose(2, 0, 1)[None], t, axis=0)  # (T, C, H, W)
        patches = chw.reshape(1, t, 3, gh // m, m, p, gw // m, m, p).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
        kw["pixel_values"] = torch.from_numpy(np.ascontiguousarray(patches.reshape(gh * gw, 3 * t * p * p)))
        kw["image_grid_thw"] = torch.tensor([[1, gh, gw]])
    with torch.no_grad():
        logits = model(**kw).logits[0, -1].float().numpy()
    return restricted_softmax_fake(logits, fake_ids, real_ids)


def export_vlm(cfg: VlmExportConfig) -> ParityReport:
    """Convert, quantize, gate and write the semantic branch into ``cfg.out``. Returns the parity report."""
    transformers = require("transformers")
    hf, out = Path(cfg.hf), Path(cfg.out)
    arch = read_arch(hf)
    (out / "semantic").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ag-vlm-") as tmp_s:
        tmp = Path(tmp_s)
        src = merge_lora(hf, Path(cfg.lora), tmp / "merged") if cfg.lora else hf
        prompt = build_prompt(src, cfg.question)
        files, mmproj = _convert(cfg, src, tmp, out / "semantic")
        report = parity_gate(cfg, transformers, arch, src, prompt, files, mmproj)
        artifacts = _ship(cfg, out, files, mmproj)
    report.passed = not report.failures
    import llama_cpp

    spec = SemanticBranchSpec(artifacts=artifacts, default_artifact=cfg.quants[0].lower(),
                              prompt={"text": prompt, "question": cfg.question}, labels=cfg.labels,
                              threshold=cfg.threshold, n_ctx=cfg.n_ctx, validation={"parity": report.to_dict()},
                              arch=SUPPORTED_ARCHS[arch])
    provenance = {"exporter": f"aligngemini-sdk {__version__}", "hf_arch": arch, "source": hf.name,
                  "lora": Path(cfg.lora).name if cfg.lora else None, "llama_cpp_python": llama_cpp.__version__,
                  "transformers": transformers.__version__, "mmproj_type": cfg.mmproj_type}
    report.bundle_id = put_branch(out, "semantic", spec, name=cfg.name, provenance=provenance).bundle_id
    if report.failures:
        raise GateFailedError("parity gate failed: " + "; ".join(report.failures), report)
    return report


def _gate_types(cfg: VlmExportConfig) -> list[str]:
    """The types the parity gate measures: F16 and Q8_0 (gated by tolerance), then the shipped ones."""
    return ["F16", "Q8_0", *[q.upper() for q in cfg.quants if q.upper() not in ("F16", "Q8_0")]]


def _convert(cfg: VlmExportConfig, src: Path, tmp: Path, sem_dir: Path) -> tuple[dict[str, Path], Path]:
    """llama.cpp's converter: the f16 text model (the reference GGUF), the mmproj, and each quantized type."""
    conv = converter_dir(cfg.llama_cpp)
    ref_gguf = tmp / "text.f16.gguf"
    run_converter(conv, src, ref_gguf, "f16")
    mmproj = sem_dir / f"mmproj.{cfg.mmproj_type}.gguf"
    run_converter(conv, src, mmproj, cfg.mmproj_type, mmproj=True)
    files: dict[str, Path] = {"F16": ref_gguf}
    for q in _gate_types(cfg)[1:]:
        files[q] = tmp / f"text.{q.lower()}.gguf"
        quantize_gguf(ref_gguf, files[q], q, cfg.imatrix)
    return files, mmproj


def parity_gate(cfg: VlmExportConfig, transformers: Any, arch: str, src: Path, prompt: str,
                files: dict[str, Path], mmproj: Path) -> ParityReport:
    """GGUF vs transformers fp32 on identical tokens and pixels, for every type in ``files``."""
    from aligngemini_sdk.runtimes.llama import LlamaSemantic

    log_step("parity gate: GGUF vs transformers (fp32)")
    spec = SemanticBranchSpec(artifacts={}, default_artifact="", prompt={"text": prompt}, labels=cfg.labels,
                              threshold=cfg.threshold, n_ctx=cfg.n_ctx, arch=SUPPORTED_ARCHS[arch])
    model = getattr(transformers, arch).from_pretrained(src, dtype="float32").eval()
    images = parity_images(cfg, _vision_size(src, arch))
    report = ParityReport(n_images=len(images), tolerances={"F16": cfg.tol_f16, "Q8_0": cfg.tol_q8})
    for q in _gate_types(cfg):
        rt = LlamaSemantic(files[q], mmproj, spec, artifact=q.lower())
        try:
            if report.transformers is None:
                report.transformers = [hf_probability(model, arch, rt.prompt_layout(img), img, src, rt.fake_ids,
                                                      rt.real_ids) for img in images]
            gg = [rt.probability(img) for img in images]
        finally:
            rt.close()
        delta = float(np.max(np.abs(np.asarray(gg) - np.asarray(report.transformers))))
        tol = report.tolerances.get(q)
        report.types[q] = ParityEntry(max_abs_delta=delta, probabilities=gg, tolerance=tol,
                                      passed=None if tol is None else delta <= tol,
                                      size_mb=round(files[q].stat().st_size / 1e6, 3))
    print_parity_table(report)
    return report


def _ship(cfg: VlmExportConfig, out: Path, files: dict[str, Path], mmproj: Path) -> dict[str, Artifact]:
    """Copy the shipped text models into the bundle; each artifact lists its model and the shared mmproj."""
    artifacts: dict[str, Artifact] = {}
    mm_rel = mmproj.relative_to(out).as_posix()
    for q in [q.upper() for q in cfg.quants] + (["F16"] if cfg.keep_reference and "F16" not in cfg.quants else []):
        dst = out / "semantic" / f"model.{q.lower()}.gguf"
        shutil.copyfile(files[q], dst)
        artifacts[q.lower()] = Artifact(runtime="llama.cpp", precision=q,
                                        files={"model": file_entry(out, dst.relative_to(out).as_posix()),
                                               "mmproj": file_entry(out, mm_rel)},
                                        options={"mmproj_type": cfg.mmproj_type})
    return artifacts
