"""Fakes the recipe makes itself: real photos passed through a small autoencoder trained here on CPU.

Why: DDA trains its pixel expert on real images against their VAE reconstructions, pairs that differ only in
what a generator's decoder leaves behind; AutoGAN (Zhang et al., 2019) showed that an autoencoder trained on
real images alone simulates the upsampling artifacts of GAN generators well enough to detect unseen GANs. No
VAE or generator weights are available offline, so we train the decoder ourselves: stride-2 down, transposed
convolution up (the upsampling GAN and VAE decoders use), L1 to the input. Its reconstructions keep the
content, size and format of their source photo, so a detector can separate them only by decoder artifacts.

Only lossless (PNG) reals are reconstructed: a reconstruction of a JPEG would lose the JPEG history its real
twin keeps, and "has JPEG blocks" would become the label. Reconstructions are then augmented exactly as PNG
reals are (including the JPEG alignment).
"""

from __future__ import annotations

import math
import random
import sys
import time

import numpy as np
import torch
from torch import nn


class ReconstructionAE(nn.Module):
    """Encoder to half resolution, transposed-convolution decoder back; outputs RGB in [0, 1]."""

    def __init__(self, ch: int = 48) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(3, ch, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(ch, ch, 4, stride=2, padding=1), nn.ReLU(),
                                    nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU())
        self.decode = nn.Sequential(nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1), nn.ReLU(),
                                    nn.Conv2d(ch, 3, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _to_tensor(crops: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2) / 255.0)


def train_autoencoder(images: list[np.ndarray], rng: random.Random, steps: int = 800, batch: int = 16,
                      crop: int = 96) -> ReconstructionAE:
    """L1 reconstruction of random crops of real photos (cosine learning-rate decay)."""
    ae = ReconstructionAE()
    opt = torch.optim.Adam(ae.parameters(), lr=2e-3)
    t0 = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        crops = []
        for _ in range(batch):
            img = rng.choice(images)
            h, w = img.shape[:2]
            t, left = rng.randint(0, h - crop), rng.randint(0, w - crop)
            crops.append(img[t:t + crop, left:left + crop])
        x = _to_tensor(crops)
        loss = (ae(x) - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0:
            print(f"[reconstruct] autoencoder step {step + 1}/{steps} L1 {float(loss) * 255:.2f} grey levels "
                  f"({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    return ae.eval()


def reconstruct(ae: ReconstructionAE, img: np.ndarray) -> np.ndarray:
    """The autoencoder's reconstruction of a whole image, as uint8 RGB of the same size (odd sizes are
    reflect-padded to even for the stride-2 layers, then cut back).

    Each channel's values are then replaced by the source's own values, rank for rank (histogram matching): a small
    autoencoder leaves a global colour cast, a cue no real generator shares and a detector would happily learn
    instead of the decoder's local artifacts. (Matching mean and spread, then clipping to [0, 255], moved a skewed
    channel's mean by 1.6 and its spread by 9 %: clipping cannot happen to a permutation of the source's values.)"""
    h, w = img.shape[:2]
    padded = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="reflect")
    with torch.no_grad():
        out = ae(_to_tensor([padded]))[0].numpy().transpose(1, 2, 0)[:h, :w]
    matched = np.empty_like(img)
    for c in range(img.shape[2]):
        order = np.argsort(out[:, :, c], axis=None, kind="stable")
        channel = np.empty(h * w, img.dtype)
        channel[order] = np.sort(img[:, :, c], axis=None)
        matched[:, :, c] = channel.reshape(h, w)
    return matched


def reconstruction_fakes(train: list[dict], images: dict[str, np.ndarray], rng: random.Random,
                         steps: int = 800) -> list[dict]:
    """Train the autoencoder on the training split's lossless reals and add each one's reconstruction to
    ``images`` as a fake; returns the new fake rows (source ``reconstruction``, path ``<real>#reconstruction``)."""
    reals = [r for r in train if r["label"] == "real" and r["abs"].lower().endswith(".png")]
    if not reals:
        return []
    ae = train_autoencoder([images[r["abs"]] for r in reals], rng, steps=steps)
    rows = []
    for r in reals:
        key = r["abs"] + "#reconstruction"
        images[key] = reconstruct(ae, images[r["abs"]])
        rows.append({**r, "abs": key, "label": "fake", "source": "reconstruction", "family": "reconstruction",
                     "lossless": True})  # augmented as its PNG twin is
    return rows
