"""The registry of pixel architectures: each family declares itself in one file, with its default input."""

import pytest

from aligngemini_sdk.errors import ExportError
from aligngemini_sdk.export.archs import PixelArch, arch_names, get_arch, register
from aligngemini_sdk.export.pixel import default_input
from aligngemini_sdk.manifest import CLIP_MEAN, IMAGENET_MEAN, InputSpec


def test_every_family_is_found_without_a_central_list():
    assert set(arch_names()) == {"compact", "dinov2", "dda", "ladeda", "module", "wholeimage"}


def test_default_inputs_travel_with_the_family():
    assert default_input("dda").height == 336 and default_input("dda").mean == CLIP_MEAN  # the paper's expert
    assert default_input("ladeda").crop == "none" and default_input("ladeda").max_side == 1024
    assert default_input("compact").height == 224 and default_input("compact").mean == IMAGENET_MEAN


def test_an_unknown_arch_is_a_typed_error_naming_the_known_ones():
    with pytest.raises(ExportError, match=r"unknown arch 'vit9000'.*ladeda"):
        get_arch("vit9000")


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="registered twice"):
        register(PixelArch(name="ladeda", help="", default_input=InputSpec(), load=lambda cfg: None))


def test_the_cli_offers_the_registry():
    from aligngemini_sdk.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "pixel", "--arch", "vit9000", "--weights", "w", "--out", "o"])
    args = parser.parse_args(["export", "pixel", "--arch", "compact", "--weights", "w", "--out", "o"])
    assert args.arch == "compact"
