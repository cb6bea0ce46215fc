"""The registry of pixel architectures the exporter knows (timm's ``register_model`` idea).

Each family declares itself in one file of this folder: its name, its default input (the preprocessing that
travels into the manifest) and how to load a PyTorch reference from weights. The declarations are torch-free
(loaders import their model code when called), so the CLI can list them on a device-side install.

Adding an architecture: put the model code in ``export/<family>.py`` and a file here that calls
:func:`register`; it is found by :func:`arch_names` / :func:`get_arch` without editing anything else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.manifest import InputSpec

if TYPE_CHECKING:
    from aligngemini_sdk.export.pixel import PixelExportConfig


@dataclass(frozen=True)
class PixelArch:
    """One pixel architecture: ``load(cfg)`` returns the eval-mode PyTorch reference (one fake logit)."""

    name: str
    help: str
    default_input: InputSpec
    load: Callable[[PixelExportConfig], Any]
    #: what the manifest's provenance records about how this family was loaded (e.g. LaDeDa's fixed filter)
    provenance: Callable[[PixelExportConfig], dict[str, Any]] = field(default=lambda cfg: {})


_REGISTRY: dict[str, PixelArch] = {}
_discovered = False


def register(arch: PixelArch) -> PixelArch:
    if arch.name in _REGISTRY and _REGISTRY[arch.name] is not arch:
        raise ValueError(f"pixel architecture {arch.name!r} is registered twice")
    _REGISTRY[arch.name] = arch
    return arch


def _discover() -> None:
    global _discovered
    if not _discovered:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            importlib.import_module(f"{__name__}.{info.name}")
        _discovered = True


def arch_names() -> tuple[str, ...]:
    _discover()
    return tuple(_REGISTRY)


def get_arch(name: str) -> PixelArch:
    _discover()
    if name not in _REGISTRY:
        raise ExportError(f"unknown arch {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def state_dict_loader(module: str, function: str) -> Callable[[PixelExportConfig], Any]:
    """A loader calling ``module.function(weights path)``, imported when called (declarations stay torch-free)."""
    def load(cfg: PixelExportConfig) -> Any:
        return getattr(importlib.import_module(module), function)(need_weights(cfg))

    return load


def need_weights(cfg: PixelExportConfig) -> str:
    if not cfg.weights:
        raise ExportError("--weights is required for this architecture")
    return cfg.weights
