"""Validate, train and ship the in-the-wild default (issue 16): both of its branches are probes on frozen features.

    python -m training.train_semantic --work runs/semantic [--round N] [--out BUNDLE]

Follows training/WILD_VALIDATION.md: each round's candidates and decision rule were written there before the round
ran (``ROUNDS``). Candidates (``CANDIDATES``) are probes -- logistic-regression heads on the pooled features of an
ImageNet-pretrained EfficientNet-Lite0 (frozen), on the native 224 centre crop and/or the whole image resized to 224
(``PROBES``) -- fused logistically, and fitted as a ``Fit`` says. They are judged by leave-one-repository-out over
the development repositories of training/splits/wild_groups.csv at the fpr5 operating point. With ``--out``, the
round's choice is trained on every training and development image and exported (fp16w) as a copy of the default
bundle, the fusion and operating points written from out-of-fold scores. The final-test repositories' features are
extracted with the rest, but no head, fold, fusion or threshold uses them (training/wild_report.py scores them).
Features are extracted once and cached in ``--work``: the recipe is feature extraction plus small regressions,
minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from aligngemini_sdk.errors import ImageError
from aligngemini_sdk.export.calibrate import (
    BranchScores,
    class_balanced,
    fit_logistic,
    logits,
    threshold_for_fpr,
)
from aligngemini_sdk.export.wholeimage import ALL_TAPS, SIDE, TAPS, WholeImageExpert, feature_columns, n_features
from aligngemini_sdk.image import load_image
from aligngemini_sdk.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from aligngemini_sdk.metrics import binary_metrics
from aligngemini_sdk.preprocess import preprocess
from training import finetune
from training.finetune import CACHED
from training.wild_split import ROOT, SHARED, SPLIT

PREVIOUS_DEFAULT = ROOT / "training" / "splits" / "previous_default_scores.csv"
PREVIOUS_DEFAULT_ID = "ag-d6e8690e7504bd35"
DESCRIPTION = ("In-the-wild default: EfficientNet-Lite0 (ImageNet, frozen) on two views -- the native 224 centre crop "
               "(pixel branch) and the whole image resized to 224 (semantic branch, ONNX) -- with logistic heads and a "
               "logistic fusion at the fpr5 operating point. Not the AlignGemini ViT-L expert; see MODEL_CARD.md.")
#: the whole-image view. A JPEG is read at libjpeg's largest DCT reduction that keeps 224 px, then resized
#: (training/WILD_VALIDATION.md, "The semantic branch's JPEG decode"); the heads were fitted on full decodes.
SPEC = InputSpec(height=SIDE, width=SIDE, crop="none", resize="exact", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 jpeg_downscale="dct")
FPR = 0.05
#: in the keys of cached features and folds: v4 since the whole-image view is shrunk with the exact area resize
#: (aligngemini_sdk.resize, session 18) instead of OpenCV's INTER_AREA; v5 since a view that grows is bicubic in
#: integers (resize.cubic) instead of OpenCV's INTER_CUBIC; v6 since a strip that grows in one side and shrinks in
#: area is area-shrunk, then grown bicubic (session 19; 54 web versions of training images have that shape)
FEATURES_VERSION = "v6"


CROP_SPEC = InputSpec(height=SIDE, width=SIDE, crop="center", resize="none", mean=IMAGENET_MEAN, std=IMAGENET_STD)
#: round 6's larger native window (training/WILD_VALIDATION.md) and the extra training windows per image
WIDE = 288
CROP_SPEC_WIDE = replace(CROP_SPEC, height=WIDE, width=WIDE)
N_WINDOWS = 4


@dataclass
class Pool:
    rows: list[dict[str, str]]
    whole: np.ndarray  # (N, 2, F) features (pooled at ALL_TAPS) of the whole-image view: as is, augmented()
    crop: np.ndarray  # (N, 2, F) features of the native-resolution centre crop, same two versions
    pixel: np.ndarray  # candidate A's P(fake): the previous default, as recorded
    y: np.ndarray
    whole_extra: np.ndarray | None = None  # (N, 2, F): versions() of each image, when loaded
    crop_extra: np.ndarray | None = None
    crop288: np.ndarray | None = None  # (N, 2, F): the native WIDE centre window, same two versions, when loaded
    #: view -> (N, N_WINDOWS, F): more native windows of each image as served (``windows()``), when loaded
    windows: dict[str, np.ndarray] = field(default_factory=dict)
    #: (view, first block) -> (N, 2, C, H, W) the input of that block, both versions (round 8), when loaded
    acts: dict[tuple[str, int], np.ndarray] = field(default_factory=dict, repr=False)
    #: probe_feats' column selections, made once per (probe, versions, windows): every fold and head reads the same array
    selected: dict[tuple[str, int, int], np.ndarray] = field(default_factory=dict, repr=False)

    def idx(self, role: str | None = None, source: str | None = None) -> np.ndarray:
        return np.asarray([i for i, r in enumerate(self.rows) if (role is None or r["role"] == role)
                           and (source is None or r["source"] == source)], dtype=int)


def web_version(rgb: np.ndarray, rng: random.Random, scale: tuple[float, float], quality: tuple[int, int]) -> np.ndarray:
    """The same image as the web would serve it: downscaled by a factor drawn from ``scale`` (INTER_AREA; (1, 1):
    not resized), then JPEG at a quality drawn from ``quality``."""
    s = rng.uniform(*scale)
    h, w = rgb.shape[:2]
    small = rgb if s == 1.0 else cv2.resize(rgb, (max(16, round(w * s)), max(16, round(h * s))),
                                            interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, rng.randint(*quality)])
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB) if ok else None
    return small if out is None else out


def augmented(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """Version 1: downscaled by a factor in [0.5, 1], JPEG at quality 60-95."""
    return web_version(rgb, rng, (0.5, 1.0), (60, 95))


def versions(rgb: np.ndarray, path: str) -> list[np.ndarray]:
    """Versions 2 and 3 (training/WILD_VALIDATION.md, round 4): JPEG at native size, quality 50-95; downscaled by a
    factor in [0.25, 0.5], then JPEG at quality 60-95. Seeded by the image's path, as version 1 is."""
    return [web_version(rgb, random.Random(path + "#2"), (1.0, 1.0), (50, 95)),
            web_version(rgb, random.Random(path + "#3"), (0.25, 0.5), (60, 95))]


def windows(rgb: np.ndarray, side: int, path: str) -> list[np.ndarray]:
    """N_WINDOWS native ``side`` x ``side`` windows of the image at positions drawn per image (seeded by its path);
    a dimension smaller than ``side`` is taken whole (preprocess then pads it as the SDK does)."""
    rng, (h, w) = random.Random(f"{path}#window{side}"), rgb.shape[:2]
    out = []
    for _ in range(N_WINDOWS):
        top, left = rng.randint(0, max(0, h - side)), rng.randint(0, max(0, w - side))
        out.append(np.ascontiguousarray(rgb[top:top + side, left:left + side]))
    return out


def rows_key(tag: str, rows: list[dict[str, str]]) -> str:
    """The cache key of features computed under ``tag`` for these images, in this order."""
    return hashlib.sha256((f"{tag}\n" + "\n".join(r["path"] for r in rows)).encode()).hexdigest()[:12]


def extract(rows: list[dict[str, str]], work: Path, n_versions: int = 2, wide: bool = False,
            acts: bool = False) -> Pool:
    """Backbone features of both views (``n_versions``: 2 or 4 versions each), cached, and candidate A's recorded
    probabilities. Versions 0-1 and 2-3 are cached apart, so the first two never change. ``wide``: also round 6's
    WIDE centre window and the extra windows (their own cache); ``acts``: also round 8's activations entering the
    stride-32 stage (their own cache)."""
    key = rows_key(FEATURES_VERSION, rows)
    cache = work / f"features-{key}.npz"
    y = np.asarray([int(r["label"] == "fake") for r in rows])
    if not cache.is_file():
        extract_to(rows, cache, served_and_augmented)
    z = np.load(cache, allow_pickle=False)
    ok = z["ok"]
    pool = Pool([r for r, k in zip(rows, ok) if k], z["whole"][ok], z["crop"][ok], previous_default_scores(rows)[ok],
                y[ok])
    if n_versions == 4:
        extra = work / f"features-extra-{key}.npz"
        if not extra.is_file():
            extract_to(rows, extra, versions)
        x = np.load(extra, allow_pickle=False)
        pool.whole_extra, pool.crop_extra = x["whole"][ok], x["crop"][ok]
    if wide:
        cache = work / f"features-windows-{key}.npz"
        if not cache.is_file():
            _extract_windows(rows, cache)
        x = np.load(cache, allow_pickle=False)
        pool.crop288 = x["crop288"][ok]
        pool.windows = {"crop": x["windows224"][ok], "crop288": x["windows288"][ok]}
    if acts:
        cache = work / f"activations{CACHED}-{key}.npz"
        if not cache.is_file():
            _extract_activations(rows, cache)
        x = np.load(cache, allow_pickle=False)
        pool.acts = {(view, CACHED): x[view][ok] for view in ("whole", "crop")}
    return pool


def previous_default_scores(rows: list[dict[str, str]]) -> np.ndarray:
    """Candidate A's P(fake): the previous default (bundle ag-d6e8690e7504bd35, the compact crop expert) as recorded
    on every image of the split (AMD EPYC, AVX2) before it was replaced. Recorded, because after the recipe ships
    its own model, the bundle in the tree is no longer candidate A."""
    with open(PREVIOUS_DEFAULT) as fh:
        recorded = {r["path"]: float(r["p_fake"]) if r["p_fake"] else np.nan for r in csv.DictReader(fh)}
    return np.asarray([recorded[r["path"]] for r in rows])


def _decoded_batches(rows: list[dict[str, str]], label: str) -> Iterator[tuple[list[int], list[tuple[np.ndarray, str]]]]:
    """The rows in batches of 8, decoded as the SDK decodes: (indices, [(rgb, path)]) of the readable ones (an image
    the SDK refuses, e.g. a truncated JPEG, is left out and said so: the recipe refuses it too), with progress."""
    n, t0 = len(rows), time.time()
    for start in range(0, n, 8):
        done, images = [], []
        for i in range(start, min(n, start + 8)):
            try:
                images.append((load_image(SHARED / rows[i]["path"]).rgb, rows[i]["path"]))
            except ImageError as exc:
                print(f"\n[{label}] skipping {exc}", file=sys.stderr)
                continue
            done.append(i)
        if done:
            yield done, images
        print(f"\r[{label}] {min(n, start + 8)}/{n} ({time.time() - t0:.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)


def served_and_augmented(rgb: np.ndarray, path: str) -> list[np.ndarray]:
    """Versions 0 and 1 of each image: as served, and ``augmented()`` (seeded by its path)."""
    return [rgb, augmented(rgb, random.Random(path))]


def extract_to(rows: list[dict[str, str]], cache: Path, make: Callable[[np.ndarray, str], list[np.ndarray]],
                run: Callable[[torch.Tensor], torch.Tensor] | None = None, label: str = "features",
                whole_spec: InputSpec = SPEC) -> None:
    """Both views (``whole_spec``, CROP_SPEC) of the two versions ``make(rgb, path)`` gives of each image, through
    ``run`` -- the shipped backbone's features (Lite0 pooled at every block) unless told -- cached as (N, 2, ...) per
    view, with ``ok`` (the image could be read)."""
    run = run or WholeImageExpert(pretrained=True, taps=ALL_TAPS).eval().features
    torch.set_num_threads(2)
    n, ok = len(rows), np.zeros(len(rows), bool)
    out: dict[str, np.ndarray] = {}
    for done, images in _decoded_batches(rows, label):
        views = [preprocess(v, spec) for rgb, path in images for made in [make(rgb, path)]
                 for spec in (whole_spec, CROP_SPEC) for v in made]
        with torch.no_grad():
            y = run(torch.from_numpy(np.stack(views))).numpy()
        y = y.reshape(len(done), 2, 2, *y.shape[1:])
        out = out or {view: np.zeros((n, 2, *y.shape[3:]), np.float32) for view in ("whole", "crop")}
        out["whole"][done], out["crop"][done], ok[done] = y[:, 0], y[:, 1], True
    cache.parent.mkdir(parents=True, exist_ok=True)
    none = np.zeros((n, 2, 0), np.float32)  # no readable image at all
    np.savez(cache, whole=out.get("whole", none), crop=out.get("crop", none), ok=ok)


def _extract_windows(rows: list[dict[str, str]], cache: Path) -> None:
    """Round 6's features: the WIDE centre window of both versions, and N_WINDOWS more native windows of the image
    as served at 224 and at WIDE."""
    model = WholeImageExpert(pretrained=True, taps=ALL_TAPS).eval()
    torch.set_num_threads(2)
    n, f, k = len(rows), n_features(ALL_TAPS), N_WINDOWS
    crop288 = np.zeros((n, 2, f), np.float32)
    w224, w288 = np.zeros((n, k, f), np.float32), np.zeros((n, k, f), np.float32)
    for done, images in _decoded_batches(rows, "windows"):
        wide, small = [], []
        for rgb, path in images:
            wide += [preprocess(v, CROP_SPEC_WIDE) for v in served_and_augmented(rgb, path)]
            wide += [preprocess(v, CROP_SPEC_WIDE) for v in windows(rgb, WIDE, path)]
            small += [preprocess(v, CROP_SPEC) for v in windows(rgb, SIDE, path)]
        with torch.no_grad():
            a = model.features(torch.from_numpy(np.stack(wide))).numpy().reshape(len(done), 2 + k, f)
            b = model.features(torch.from_numpy(np.stack(small))).numpy().reshape(len(done), k, f)
        crop288[done], w288[done], w224[done] = a[:, :2], a[:, 2:], b
    np.savez(cache, crop288=crop288, windows224=w224, windows288=w288)


def _extract_activations(rows: list[dict[str, str]], cache: Path) -> None:
    """Round 8's cache: the activation entering block CACHED, of the views and versions the features pool."""
    model = finetune.backbone()
    extract_to(rows, cache, served_and_augmented, lambda x: finetune.stage_input(model, x), "activations")


@dataclass
class Head:
    """A logistic-regression head on standardised features."""

    w: np.ndarray
    b: float
    mu: np.ndarray
    sd: np.ndarray

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mu) / self.sd) @ self.w + self.b


def fit_head(x: np.ndarray, y: np.ndarray, l2: float, sample_weight: np.ndarray | None = None) -> Head:
    """Class-balanced logistic regression (``sample_weight`` shares each class's half, see ``class_balanced``)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy(((x - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    cw = torch.from_numpy(class_balanced(y, sample_weight).astype(np.float32))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = xt @ w + b
        loss = (cw * torch.nn.functional.binary_cross_entropy_with_logits(z, yt, reduction="none")).sum()
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return Head(w.detach().numpy().astype(np.float64), float(b.item()), mu, sd)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


#: probe -> (view, taps): which view's features, pooled at which blocks (besides the head's)
PROBES = {"B": ("whole", ()), "B2": ("whole", TAPS), "Dcrop": ("crop", TAPS),
          "Ewhole": ("whole", ALL_TAPS), "Ecrop": ("crop", ALL_TAPS), "Pcrop": ("crop288", ALL_TAPS),
          "Tboth": ("both", ALL_TAPS)}  # "both": the crop view's features, then the whole image's (round 7)
#: view -> the input the shipped branch reads it through
VIEW_SPECS = {"whole": SPEC, "crop": CROP_SPEC, "crop288": CROP_SPEC_WIDE}


@dataclass(frozen=True)
class Fit:
    """How a probe's head is fitted: ``balanced``: every source repository weighs the same within its class (heads
    and fusion); ``versions``: how many versions of each training image it sees (2, or 4 with ``versions()``'s);
    ``exclude``: training-role sources left out; ``l2``: the heads' penalty, when not the recipe's ``--l2``;
    ``windows``: a crop-view head also trains on that many more native windows of each image (``windows()``);
    ``adapt``: round 8 -- the first block fine-tuned, per outer fold, in both views before the heads are fitted
    (None: the backbone stays frozen); ``nested``: round 9 -- and again per inner fold, for the inner scores."""

    balanced: bool = False
    versions: int = 2
    exclude: tuple[str, ...] = ()
    l2: float | None = None
    windows: int = 0
    adapt: int | None = None
    nested: bool = False


@dataclass(frozen=True)
class Candidate:
    """A design under the protocol: the crop-view part (a probe, "A": the previous default as recorded, or None),
    the whole-image probe (or None), fused logistically when both are there, and how the heads are fitted."""

    pixel: str | None
    semantic: str | None
    fit: Fit = field(default_factory=Fit)


BALANCED = Fit(balanced=True)
PROGAN_PAIRS = ("PeterWang512/CNNDetection",)
CANDIDATES = {"A": Candidate("A", None), "B": Candidate(None, "B"), "C": Candidate("A", "B"),
              "B2": Candidate(None, "B2"), "D": Candidate("Dcrop", "B2"), "E": Candidate("Ecrop", "Ewhole"),
              "F": Candidate("Dcrop", "B2", BALANCED), "G": Candidate("Ecrop", "Ewhole", BALANCED),
              "H": Candidate("Ecrop", "Ewhole", Fit(True, 4)),
              "J": Candidate("Ecrop", "Ewhole", Fit(True, 2, PROGAN_PAIRS)),
              "K": Candidate("Ecrop", "Ewhole", Fit(True, 4, PROGAN_PAIRS)),
              "L": Candidate("Ecrop", "Ewhole", Fit(True, l2=0.3)), "M": Candidate("Ecrop", "Ewhole", Fit(True, l2=3.0)),
              "N": Candidate("Ecrop", "Ewhole", Fit(True, windows=N_WINDOWS)), "P": Candidate("Pcrop", "Ewhole", BALANCED),
              "Q": Candidate("Pcrop", "Ewhole", Fit(True, windows=N_WINDOWS)), "T": Candidate(None, "Tboth", BALANCED),
              "V": Candidate("Ecrop", "Ewhole", Fit(True, adapt=15)), "W": Candidate("Ecrop", "Ewhole", Fit(True, adapt=CACHED)),
              "V9": Candidate("Ecrop", "Ewhole", Fit(True, adapt=15, nested=True))}


@dataclass(frozen=True)
class Round:
    """A round of training/WILD_VALIDATION.md: its candidates, and its rule -- the best one replaces ``baseline`` only
    if it beats it by ``margin`` with a mean real-repository false-positive rate of at most 10 %."""

    candidates: tuple[str, ...]
    baseline: str
    margin: float


ROUNDS = {2: Round(("A", "B", "C", "B2", "D"), "A", 0.05), 3: Round(("D", "E", "F", "G"), "D", 0.03),
          4: Round(("G", "H", "J", "K"), "G", 0.03), 5: Round(("G", "L", "M"), "G", 0.03),
          6: Round(("G", "N", "P", "Q"), "G", 0.03), 7: Round(("G", "T"), "G", 0.03), 8: Round(("G", "V", "W"), "G", 0.03),
          9: Round(("G", "V9"), "G", 0.03)}
#: the round ``--out`` runs unless told: the latest whose choice ships (G) and whose cross-validation takes minutes;
#: rounds 8 and 9 confirmed G too, in 30 and 49 min (training/WILD_VALIDATION.md), and run with ``--round``
RECIPE_ROUND = 7


def probe_feats(pool: Pool, probe: str, n_versions: int = 2, n_windows: int = 0) -> np.ndarray:
    """(N, n_versions [+ n_windows], F) features of the probe's view and taps (version 0: the image as served; a
    crop view's extra windows last). Computed as the shipped default's recipe computed them: float32 sums depend on
    memory layout, and the recipe must give its weights back byte for byte. Made once per pool, probe, version and
    window count; callers index it, never write it."""
    if n_windows and PROBES[probe][0] not in pool.windows:
        n_windows = 0  # a view without extra windows (the whole image): its versions only
    key = (probe, n_versions, n_windows)
    if key not in pool.selected:
        x = _select(pool, probe, n_versions)
        if n_windows:
            x = np.concatenate([x, pool.windows[PROBES[probe][0]][:, :n_windows, feature_columns(PROBES[probe][1])]],
                               axis=1)
        pool.selected[key] = x
    return pool.selected[key]


def _select(pool: Pool, probe: str, n_versions: int) -> np.ndarray:
    view, taps = PROBES[probe]
    cols = feature_columns(taps)
    if view == "both":
        return np.concatenate([_select(pool, "Ecrop", n_versions), _select(pool, "Ewhole", n_versions)], axis=2)
    features = getattr(pool, view)
    if features is None:
        raise ValueError(f"probe {probe} reads the {view} view, which this pool did not load (extract(wide=True))")
    x = features[:, :, cols]
    if n_versions == 2:
        return x
    extra = getattr(pool, f"{view}_extra")
    if n_versions != 4 or extra is None:
        raise ValueError(f"{n_versions} versions of each image asked; the pool holds 2" + (" or 4" if extra else ""))
    return np.concatenate([x, extra[:, :, cols]], axis=1)


def repo_weights(pool: Pool, idx: np.ndarray) -> np.ndarray:
    """1 / (images of its repository among ``idx``) for each image of ``idx``: every repository weighs the same."""
    sources = [pool.rows[i]["source"] for i in idx]
    counts = {s: sources.count(s) for s in set(sources)}
    return np.asarray([1.0 / counts[s] for s in sources])


def train_idx(pool: Pool, fit: Fit) -> np.ndarray:
    """The training-role images a fit uses (its excluded sources left out)."""
    return np.asarray([i for i in pool.idx("train") if pool.rows[i]["source"] not in fit.exclude], dtype=int)


def fitting_idx(pool: Pool, fit: Fit, groups: list[str], held: str) -> np.ndarray:
    """What a head (or an adaptation) fits on when ``held`` is left out of ``groups``: the training-role images the
    fit uses, then every other development repository of ``groups``, in that order."""
    return np.concatenate([train_idx(pool, fit)] + [pool.idx("dev", g) for g in groups if g != held])


def fit_probe(pool: Pool, probe: str, idx: np.ndarray, l2: float, fit: Fit = Fit()) -> Head:
    x = probe_feats(pool, probe, fit.versions, fit.windows)[idx]
    per_image = x.shape[1]  # versions, and a crop view's extra windows
    sw = np.repeat(repo_weights(pool, idx), per_image) if fit.balanced else None
    return fit_head(x.reshape(-1, x.shape[2]), np.repeat(pool.y[idx], per_image), l2 if fit.l2 is None else fit.l2, sw)


def probe_scores(pool: Pool, probe: str, fit_idx: np.ndarray, score_idx: np.ndarray, l2: float,
                 fit: Fit = Fit()) -> np.ndarray:
    return sigmoid(fit_probe(pool, probe, fit_idx, l2, fit).logits(probe_feats(pool, probe)[score_idx, 0]))


def oof(pool: Pool, probe: str, groups: list[str], l2: float, fit: Fit = Fit()) -> np.ndarray:
    """Out-of-fold probabilities over ``groups`` (concatenated in order): each group scored by a head trained on the
    training data and the other groups."""
    return np.concatenate([probe_scores(pool, probe, fitting_idx(pool, fit, groups, g), pool.idx("dev", g), l2, fit)
                           for g in groups])


def candidate_scores(pool: Pool, held: str, groups: list[str], l2: float,
                     names: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per candidate: (out-of-fold scores on the other development repos, scores on ``held``)."""
    rest = [g for g in groups if g != held]
    rest_idx = np.concatenate([pool.idx("dev", g) for g in rest])
    h_idx = pool.idx("dev", held)
    parts: dict[tuple[str, Fit], tuple[np.ndarray, np.ndarray]] = {}

    def part(probe: str, fit: Fit) -> tuple[np.ndarray, np.ndarray]:
        if probe == "A":
            return pool.pixel[rest_idx], pool.pixel[h_idx]
        if (probe, fit) not in parts:
            fit_idx = fitting_idx(pool, fit, groups, held)
            parts[probe, fit] = (oof(pool, probe, rest, l2, fit), probe_scores(pool, probe, fit_idx, h_idx, l2, fit))
        return parts[probe, fit]

    out = {}
    for name in names:
        c = CANDIDATES[name]
        if c.pixel is None or c.semantic is None:
            out[name] = part(c.pixel or c.semantic or "", c.fit)
            continue
        out |= fused(pool, name, rest_idx, part(c.pixel, c.fit), part(c.semantic, c.fit))
    return out


def fused(pool: Pool, name: str, rest_idx: np.ndarray, a: tuple[np.ndarray, np.ndarray],
          b: tuple[np.ndarray, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A two-view candidate's (inner, held) scores: the logistic fusion of its views' scores ``a`` (crop) and ``b``
    (whole image), its weights fitted on the inner out-of-fold ones; the views' own scores too (what ship() fuses)."""
    (a_in, a_held), (b_in, b_held) = a, b
    sw = repo_weights(pool, rest_idx) if CANDIDATES[name].fit.balanced else None
    w, bias = fit_logistic(BranchScores(pool.y[rest_idx], a_in, b_in, "inner"), sample_weight=sw)
    return {name: (fuse(a_in, b_in, w, bias), fuse(a_held, b_held, w, bias)),
            f"{name}.pixel": (a_in, a_held), f"{name}.semantic": (b_in, b_held)}


def nested_scores(pool: Pool, held: str, groups: list[str], l2: float, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Round 9: an adapted candidate, nested -- the held-out repository scored after adapting on the other
    repositories, and each of those scored (inner out of fold) after adapting without it."""
    c = CANDIDATES[name]
    assert c.pixel and c.semantic and c.fit.adapt is not None
    rest = [g for g in groups if g != held]
    rest_idx = np.concatenate([pool.idx("dev", g) for g in rest])
    probes = (c.pixel, c.semantic)
    outer = adapted(pool, held, groups, c.fit.adapt, l2)
    held_scores = [probe_scores(outer, p, fitting_idx(pool, c.fit, groups, held), pool.idx("dev", held), l2, c.fit)
                   for p in probes]
    inner_scores: list[list[np.ndarray]] = [[], []]
    for g in rest:
        inner = adapted(pool, g, rest, c.fit.adapt, l2)
        fit_idx = fitting_idx(pool, c.fit, rest, g)
        for scores, p in zip(inner_scores, probes):
            scores.append(probe_scores(inner, p, fit_idx, pool.idx("dev", g), l2, c.fit))
    a, b = ((np.concatenate(inner_scores[i]), held_scores[i]) for i in range(2))
    return fused(pool, name, rest_idx, a, b)


def fold(pool: Pool, held: str, groups: list[str], l2: float, names: tuple[str, ...]) -> dict[str, Any]:
    """Leave ``held`` out; every candidate's threshold is its fpr5 point on the other repos' real photos."""
    rest_idx = np.concatenate([pool.idx("dev", g) for g in groups if g != held])
    real = pool.y[rest_idx] == 0
    h_idx = pool.idx("dev", held)
    out: dict[str, Any] = {"repo": held, "label": "fake" if pool.y[h_idx][0] else "real", "n": len(h_idx)}
    scores = candidate_scores(pool, held, groups, l2, tuple(n for n in names if CANDIDATES[n].fit.adapt is None))
    cheap = [n for n in names if CANDIDATES[n].fit.adapt is not None and not CANDIDATES[n].fit.nested]
    for first in sorted({a for n in cheap if (a := CANDIDATES[n].fit.adapt) is not None}):
        scores |= candidate_scores(adapted(pool, held, groups, first, l2), held, groups, l2,
                                   tuple(n for n in cheap if CANDIDATES[n].fit.adapt == first))
    for name in (n for n in names if CANDIDATES[n].fit.nested):
        scores |= nested_scores(pool, held, groups, l2, name)
    for name, (inner, held_scores) in scores.items():
        t = threshold_for_fpr(inner[real], FPR)
        out[name] = {"threshold": t, "rate_fake": float(np.mean(held_scores > t)), "scores": held_scores.tolist()}
    return out


def adapted(pool: Pool, held: str, groups: list[str], first: int, l2: float) -> Pool:
    """Round 8: the pool with both views' blocks ``first``.. fine-tuned on this fold's fitting images (the training
    role and every development repository but ``held``)."""
    return adapt(pool, fitting_idx(pool, BALANCED, groups, held), first, l2, held)[0]


def adapt(pool: Pool, fit_idx: np.ndarray, first: int, l2: float, label: str) -> tuple[Pool, dict[str, finetune.Tail]]:
    """Both views' blocks ``first``.. fine-tuned on ``fit_idx``, starting from G's heads on the frozen features: the
    pool with adapted features, and per view the adapted blocks (``finetune.graft`` makes the network to export)."""
    model, features, tails = finetune.backbone(), {}, {}
    for view, probe in (("whole", "Ewhole"), ("crop", "Ecrop")):
        head = fit_probe(pool, probe, fit_idx, l2, BALANCED)
        acts = stage_acts(pool, view, first)
        tail = finetune.fine_tune(model, acts, getattr(pool, view), pool.y, fit_idx, repo_weights(pool, fit_idx),
                                  finetune.StartHead(head.w, head.b, head.mu, head.sd), first, l2,
                                  f"adapt {first}: {label} {view}")
        features[view] = finetune.adapted_features(tail, acts, getattr(pool, view), first)
        tails[view] = tail
    return replace(pool, whole=features["whole"], crop=features["crop"], selected={}), tails


def stage_acts(pool: Pool, view: str, first: int) -> np.ndarray:
    """(N, 2, C, H, W) inputs of block ``first`` of the view, advanced once from the cached stage input."""
    if (view, first) not in pool.acts:
        a = pool.acts[view, CACHED]
        flat = finetune.advance(finetune.backbone(), a.reshape(-1, *a.shape[2:]), first)
        pool.acts[view, first] = flat.reshape(*a.shape[:2], *flat.shape[1:])
    return pool.acts[view, first]


def fuse(a: np.ndarray, b: np.ndarray, weights: dict[str, float], bias: float) -> np.ndarray:
    """The logistic fusion rule, vectorised over images."""
    return sigmoid(weights["pixel"] * logits(a) + weights["semantic"] * logits(b) + bias)


def summarize(folds: list[dict[str, Any]], candidates: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in candidates:
        tpr = [f[c]["rate_fake"] for f in folds if f["label"] == "fake"]
        fpr = [f[c]["rate_fake"] for f in folds if f["label"] == "real"]
        y = np.concatenate([[int(f["label"] == "fake")] * f["n"] for f in folds])
        s = np.concatenate([f[c]["scores"] for f in folds])
        out[c] = {"balanced_accuracy_repo_weighted": 0.5 * (np.mean(tpr) + 1 - np.mean(fpr)),
                  "mean_tpr_fake_repos": float(np.mean(tpr)), "mean_fpr_real_repos": float(np.mean(fpr)),
                  "pooled_auc": binary_metrics(y, s)["auc"],
                  "per_repo": {f["repo"]: f[c]["rate_fake"] for f in folds}}
    return out


def decide(summary: dict[str, Any], rnd: Round) -> str:
    """training/WILD_VALIDATION.md's rule for the round."""
    best = max(rnd.candidates, key=lambda c: summary[c]["balanced_accuracy_repo_weighted"])
    gain = summary[best]["balanced_accuracy_repo_weighted"] - summary[rnd.baseline]["balanced_accuracy_repo_weighted"]
    if best != rnd.baseline and (gain < rnd.margin or summary[best]["mean_fpr_real_repos"] > 0.10):
        return rnd.baseline
    return best


def final_head_model(pool: Pool, probe: str, l2: float, fit: Fit, net: WholeImageExpert | None = None) -> WholeImageExpert:
    """The probe's head trained on every training and development image it may see, folded into the network (the
    head reads raw features: standardisation moves into its weights and bias). ``net``: an adapted network (round 8)
    instead of the pretrained one."""
    head = fit_probe(pool, probe, np.concatenate([train_idx(pool, fit), pool.idx("dev")]), l2, fit)
    return fold_into(net or WholeImageExpert(pretrained=True, taps=PROBES[probe][1]).eval(), head)


def fold_into(model: WholeImageExpert, head: Head) -> WholeImageExpert:
    """Set the network's linear head to ``head`` on raw features: w / sd, and b - sum(w * mu / sd)."""
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy((head.w / head.sd)[None].astype(np.float32)))
        model.head.bias.fill_(float(head.b - np.sum(head.w * head.mu / head.sd)))
    return model


def write_csv(rows: list[dict[str, str]], path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "source"])
        w.writerows([[str(SHARED / r["path"]), r["label"], r["source"]] for r in rows])
    return path


def oof_scores(folds: list[dict[str, Any]], name: str) -> np.ndarray:
    return np.concatenate([f[name]["scores"] for f in folds])


def ship(pool: Pool, folds: list[dict[str, Any]], choice: str, l2: float, out: Path, work: Path,
         precisions: tuple[str, ...]) -> None:
    """The chosen candidate as a bundle: the shipped pixel branch (or the crop-view probe, for D), the whole-image
    probe as the semantic branch, a logistic fusion and the fpr1/5/10 points, all from out-of-fold scores."""
    import shutil

    c = CANDIDATES[choice]
    base = _shippable(c, choice)
    nets: dict[str, WholeImageExpert] = {}
    if c.fit.adapt is not None:  # round 8: both views' last layers fine-tuned on every training and development image
        pool, tails = adapt(pool, np.concatenate([train_idx(pool, c.fit), pool.idx("dev")]), c.fit.adapt, l2, "ship")
        nets = {view: finetune.graft(finetune.backbone(), tail, c.fit.adapt) for view, tail in tails.items()}
    dev_y = np.concatenate([[int(f["label"] == "fake")] * f["n"] for f in folds])
    fused = c.pixel is not None
    scores = BranchScores(dev_y, oof_scores(folds, f"{choice}.pixel" if fused else "A"),
                          oof_scores(folds, f"{choice}.semantic" if fused else choice),
                          "development repos, out-of-fold (training/WILD_VALIDATION.md)")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out)
    _export_branches(pool, c, choice, l2, nets, scores, out, work, precisions)
    sw = np.concatenate([[1.0 / f["n"]] * f["n"] for f in folds]) if c.fit.balanced else None  # fold = repository
    _write_fusion(out, scores, sw, fused)


def _shippable(c: Candidate, choice: str) -> Path:
    """The bundle a candidate starts from (the one in the tree); SystemExit if the candidate cannot ship."""
    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.detector import default_bundle_path

    if c.semantic is None:
        raise SystemExit(f"candidate {choice} has no whole-image branch to ship")
    if PROBES[c.semantic][0] not in VIEW_SPECS:  # round 7's joint head: not built, since it did not win
        raise SystemExit(f"candidate {choice}'s {PROBES[c.semantic][0]!r} head has no exporter yet (split it into "
                         "the two branches' parts, fused with weights 1 and 1, before shipping it)")
    base = Bundle.open(default_bundle_path())
    if c.pixel in (None, "A") and base.manifest.bundle_id != PREVIOUS_DEFAULT_ID:
        raise SystemExit(f"candidate {choice} keeps the previous default's pixel expert ({PREVIOUS_DEFAULT_ID}), "
                         f"which is no longer the bundle in the tree ({base.manifest.bundle_id}): restore it first")
    return base.root


def _export_branches(pool: Pool, c: Candidate, choice: str, l2: float, nets: dict[str, WholeImageExpert],
                     scores: BranchScores, out: Path, work: Path, precisions: tuple[str, ...]) -> None:
    """The candidate's crop-view probe (unless it keeps the shipped pixel expert) and whole-image probe, through the
    export path into ``out``, each at its fpr5 threshold on the out-of-fold scores of development real photos."""
    import shutil

    from aligngemini_sdk.export.pixel import PixelExportConfig, export_pixel

    assert c.semantic is not None and scores.pixel is not None and scores.semantic is not None  # ship() made them
    real = scores.labels == 0
    calib = write_csv([r for r in pool.rows if r["role"] == "train"], work / "calib.csv")  # ranges: not the gate's
    val = write_csv([r for r in pool.rows if r["role"] == "dev"], work / "dev.csv")
    common: dict[str, Any] = {
        "arch": "module", "out": out, "precisions": precisions, "calib": str(calib), "val": str(val),
        "extra_provenance": {"recipe": "training/train_semantic.py", "choice": choice, "l2": l2}
        | ({"fine_tuned_from_block": c.fit.adapt, "epochs": finetune.EPOCHS, "lr": finetune.LR} if c.fit.adapt else {})}
    if c.pixel not in (None, "A"):
        shutil.rmtree(out / "pixel")  # the shipped pixel expert's files go with it
        view = PROBES[c.pixel][0]
        export_pixel(PixelExportConfig(module=final_head_model(pool, c.pixel, l2, c.fit, nets.get(view)),
                                       input=VIEW_SPECS[view],
                                       threshold=threshold_for_fpr(scores.pixel[real], FPR), **common))
    shutil.rmtree(out / "semantic", ignore_errors=True)  # a previous semantic branch's files go with it
    semantic = final_head_model(pool, c.semantic, l2, c.fit, nets.get(PROBES[c.semantic][0]))
    export_pixel(PixelExportConfig(module=semantic, input=SPEC,
                                   branch="semantic", threshold=threshold_for_fpr(scores.semantic[real], FPR), **common))


def _write_fusion(out: Path, scores: BranchScores, sample_weight: np.ndarray | None, fused: bool) -> None:
    """The manifest's name, description, logistic fusion (fitted on the out-of-fold scores, or the semantic branch
    alone) and its fpr1/5/10 operating points, fpr5 the default."""
    from aligngemini_sdk.bundle import read_manifest, write_manifest
    from aligngemini_sdk.export.calibrate import choose_points

    weights, bias = fit_logistic(scores, sample_weight=sample_weight) if fused else ({"pixel": 0.0, "semantic": 1.0}, 0.0)
    m = read_manifest(out)
    m = replace(m, name="aligngemini-default-wild", description=DESCRIPTION,
                fusion=replace(m.fusion, rule="logistic", weights=weights, bias=bias, threshold=0.5))
    points = choose_points(m, scores, (0.01, 0.05, 0.10), confidence=None)  # empirical; `info` states each bound
    write_manifest(out, replace(m, fusion=replace(m.fusion, operating_points=points, default_operating_point="fpr5")))


def cross_validate(pool: Pool, groups: list[str], l2: float, work: Path, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Leave-one-repository-out over ``groups`` (cached in ``work`` by features, groups, l2 and candidates)."""
    designs: list[tuple[Any, ...]] = [(n, CANDIDATES[n].pixel, CANDIDATES[n].semantic, CANDIDATES[n].fit.balanced) for n in names]
    designs += [(n, CANDIDATES[n].fit.versions, CANDIDATES[n].fit.exclude) for n in names
                if CANDIDATES[n].fit.versions != 2 or CANDIDATES[n].fit.exclude]  # earlier rounds keep their keys
    designs += [(n, CANDIDATES[n].fit.l2) for n in names if CANDIDATES[n].fit.l2 is not None]
    designs += [(n, "windows", CANDIDATES[n].fit.windows) for n in names if CANDIDATES[n].fit.windows]
    designs += [(n, "adapt", CANDIDATES[n].fit.adapt, finetune.EPOCHS, finetune.LR)
                + (("nested",) if CANDIDATES[n].fit.nested else ()) for n in names if CANDIDATES[n].fit.adapt is not None]
    key = hashlib.sha256(json.dumps([FEATURES_VERSION, len(pool.rows), groups, l2, designs]).encode()).hexdigest()[:12]
    cache = work / f"folds-{key}.json"
    if cache.is_file():
        return list(json.loads(cache.read_text()))
    folds, t0 = [], time.time()
    for g in groups:
        folds.append(fold(pool, g, groups, l2, names))
        print(f"[cv] {len(folds)}/{len(groups)} {g} ({time.time() - t0:.0f} s): "
              + ", ".join(f"{c} {folds[-1][c]['rate_fake']:.2f}" for c in names), file=sys.stderr)
    cache.write_text(json.dumps(folds, default=float))
    return folds


def load_rows() -> list[dict[str, str]]:
    with open(SPLIT) as fh:
        return list(csv.DictReader(fh))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(ROOT / "runs" / "semantic"))
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--round", type=int, choices=sorted(ROUNDS), default=RECIPE_ROUND,
                    help=f"which round of training/WILD_VALIDATION.md to run (default {RECIPE_ROUND}: the latest whose "
                         "choice ships and whose cross-validation takes minutes)")
    ap.add_argument("--out", help="write the new default bundle here when the rule chooses a new candidate")
    ap.add_argument("--compare", metavar="BUNDLE",
                    help="with --out: how the rebuilt bundle reproduces BUNDLE (e.g. sdk/default_bundle): its model "
                         "files byte for byte, else the verdicts and fused scores on every image of the split")
    ap.add_argument("--precisions", default="fp16w",
                    help="artifacts of both branches (default fp16w: FP16 weights, FP32 compute). Measured on AMD EPYC "
                         "(AVX2): INT8 with u8 weights passed the gate but ran 9x slower than FP32 (57 vs 6.6 ms); s7 "
                         "weights missed the gate (97.7 %% agreement after 3 layers in float); FP32 is 13.5 MB a branch, "
                         "over the 15 MB bundle budget; FP16 compute 8.0 ms vs FP32's 6.3. On an AVX-512 VNNI EPYC (G): "
                         "s7 missed the gate in both branches, u8 passed at 23.7 ms vs FP32's 3.4")
    args = ap.parse_args()
    work = Path(args.work)
    rows = load_rows()
    rnd = ROUNDS[args.round]
    wide = any(CANDIDATES[c].fit.windows or CANDIDATES[c].pixel == "Pcrop" for c in rnd.candidates)
    acts = any(CANDIDATES[c].fit.adapt is not None for c in rnd.candidates)
    pool = extract(rows, work, max(CANDIDATES[c].fit.versions for c in rnd.candidates), wide, acts)
    groups = sorted({r["source"] for r in rows if r["role"] == "dev"})
    folds = cross_validate(pool, groups, args.l2, work, rnd.candidates)
    summary = summarize(folds, rnd.candidates)
    choice = decide(summary, rnd)
    result = {"round": args.round, "l2": args.l2, "fpr_target": FPR, "folds": folds, "summary": summary,
              "choice": choice}
    work.mkdir(parents=True, exist_ok=True)
    (work / f"cv-round{args.round}.json").write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({c: {k: v for k, v in summary[c].items() if k != "per_repo"} for c in rnd.candidates}
                     | {"choice": choice}, indent=1, default=float))
    if args.out and choice != "A":
        ship(pool, folds, choice, args.l2, Path(args.out), work, tuple(args.precisions.split(",")))
        if args.compare:
            print(reproduction(Path(args.out), Path(args.compare), pool.rows))
    return 0


@dataclass(frozen=True)
class Reproduction:
    """How a rebuilt bundle reproduces a shipped one: byte for byte, or (float kernels differ between CPU kinds)
    by its answers on the split's images."""

    identical_files: bool
    n_images: int = 0
    verdicts_changed: int = 0
    max_abs_score_diff: float = 0.0

    def __str__(self) -> str:
        if self.identical_files:
            return "reproduced: every model file byte for byte"
        return (f"model files differ in their bits; on {self.n_images} images {self.verdicts_changed} verdicts change, "
                f"fused |dp| <= {self.max_abs_score_diff:.2g}")


def reproduction(new: Path, old: Path, rows: list[dict[str, str]]) -> Reproduction:
    from aligngemini_sdk.bundle import Bundle
    from aligngemini_sdk.detector import Detector, DetectorOptions

    a, b = Bundle.open(new).manifest.all_files(), Bundle.open(old).manifest.all_files()
    if {k: f.sha256 for k, f in a.items()} == {k: f.sha256 for k, f in b.items()}:
        return Reproduction(True)
    changed, worst = 0, 0.0
    with Detector(new, DetectorOptions(provenance=False)) as dn, Detector(old, DetectorOptions(provenance=False)) as do:
        for r in rows:  # the pool's rows: every image the SDK reads
            x, y = dn.detect(SHARED / r["path"]), do.detect(SHARED / r["path"])
            changed += x.is_fake != y.is_fake
            worst = max(worst, abs(x.score - y.score))
    return Reproduction(False, len(rows), changed, worst)


if __name__ == "__main__":
    sys.exit(main())
