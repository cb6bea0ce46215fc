"""How a Detector runs (MediaPipe Tasks' options object): :class:`DetectorOptions`, and the closed vocabularies
it takes, :class:`~aligngemini_sdk.device.Device` and :class:`~aligngemini_sdk.budget.PowerMode`. Strings are accepted and validated here, once: everything past
the options sees the enums."""

from __future__ import annotations

from dataclasses import dataclass

from aligngemini_sdk.budget import PowerMode, check_budget_ms
from aligngemini_sdk.device import Device
from aligngemini_sdk.image import DEFAULT_MAX_PIXELS

__all__ = ["DetectorOptions", "Device", "PowerMode"]


@dataclass(frozen=True)
class DetectorOptions:
    """How a Detector runs. ``budget_ms=None`` means no deadline (the VLM runs whenever it can matter).
    ``device`` and ``power`` take the enums or their string values."""

    device: Device = Device.AUTO
    budget_ms: float | None = None
    power: PowerMode = PowerMode.FULL
    threads: int | None = None
    pixel_precision: str | None = None
    semantic_precision: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    load_semantic: bool = True
    verbose: bool = False
    #: read provenance (C2PA, generator metadata) from file and bytes inputs before decoding pixels
    provenance: bool = True
    #: PEM file of C2PA trust anchors (a trust list, a vendor's roots); None: every signature is untrusted
    trust_anchors: str | None = None
    #: a named operating point of the bundle (e.g. "fpr5": thresholds chosen for a 5 % real-photo false-positive
    #: rate); None: the bundle's default point, or its own thresholds when it has none
    operating_point: str | None = None
    #: Ed25519 public keys (PEM files or bytes) of whoever may sign the bundle; when given, a bundle whose manifest
    #: none of them signed is refused (BundleSignatureError). None: signatures are not checked
    trusted_keys: tuple[str | bytes, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "power", PowerMode.parse(self.power))
        object.__setattr__(self, "device", Device.parse(self.device))
        check_budget_ms(self.budget_ms)
