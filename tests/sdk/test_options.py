"""DetectorOptions take the enums or their strings, parse them once, and reject anything else with a typed error."""

import json

import pytest

from aligngemini_sdk import DetectorOptions, Device, PowerMode
from aligngemini_sdk.errors import RuntimeUnavailableError
from aligngemini_sdk.runtimes.onnxruntime import DEVICE_PROVIDERS


def test_strings_and_enums_give_the_same_options():
    a = DetectorOptions(device="cpu", power="balanced")
    b = DetectorOptions(device=Device.CPU, power=PowerMode.BALANCED)
    assert a == b and a.device is Device.CPU and a.power is PowerMode.BALANCED


def test_an_enum_is_its_value_everywhere_a_string_was():
    assert Device.CPU == "cpu" and f"{Device.CUDA}" == "cuda" and str(PowerMode.LOW) == "low"
    assert json.dumps({"device": Device.TENSORRT}) == '{"device": "tensorrt"}'
    # a table keyed by the enum finds a plain string, and back (Enum's own hash would not)
    assert DEVICE_PROVIDERS["cuda"] == DEVICE_PROVIDERS[Device.CUDA] and {"cpu": 1}[Device.CPU] == 1


def test_unknown_values_are_refused_when_the_options_are_made():
    with pytest.raises(ValueError, match="power must be one of"):
        DetectorOptions(power="turbo")
    with pytest.raises(RuntimeUnavailableError, match="unknown device 'abacus'"):
        DetectorOptions(device="abacus")


def test_only_gpu_devices_offload_the_vlm():
    assert {d for d in Device if d.offloads_vlm} == {Device.CUDA, Device.TENSORRT, Device.METAL, Device.VULKAN}
