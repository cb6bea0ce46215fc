"""What this device is: the CPU fingerprint reports carry, and the class of 8-bit instructions INT8 speed depends on."""

import json

from aligngemini_sdk import device
from aligngemini_sdk.device import _CPUID_NAMES, _process_view, cpu_info, cpu_slug, int8_kernel_class
from tests.conftest import needs_emulated_avx2, on_emulated_avx2


def test_int8_kernel_class_names_the_best_8_bit_instructions_a_cpu_has():
    assert int8_kernel_class(["avx2", "fma"]) == "avx2"
    assert int8_kernel_class(["avx2", "avx512f", "avx512bw"]) == "avx2"  # AVX-512BW without VNNI: VPMADDUBSW
    assert int8_kernel_class(["avx2", "avx_vnni"]) == "vnni"
    assert int8_kernel_class(["avx2", "avx512_vnni", "amx_int8"]) == "amx"
    assert int8_kernel_class(["asimd", "asimddp"]) == "arm-dotprod"
    assert int8_kernel_class(["asimd"]) == "arm-neon"
    assert int8_kernel_class([]) == "other"


def test_this_cpu_has_a_class_and_a_file_name_safe_slug():
    assert int8_kernel_class() == int8_kernel_class(cpu_info()["features"])
    slug = cpu_slug()
    assert slug and all(c.isalnum() or c == "-" for c in slug)


def test_reports_of_two_cpus_under_one_model_name_are_named_apart(monkeypatch):
    """An AVX2-only and a VNNI EPYC both call themselves "AMD EPYC": their benchmark reports must not overwrite
    each other."""
    stems = set()
    for features in (["avx2", "fma"], ["avx2", "avx512_vnni"]):
        monkeypatch.setattr(device, "cpu_info", lambda f=features: {"model": "AMD EPYC", "features": f})
        stems.add(device.report_stem())
    assert stems == {"amd-epyc-avx2", "amd-epyc-vnni"}


def test_features_are_those_this_process_can_use_not_those_the_host_lists():
    listed = {"avx2", "fma", "avx512f", "avx512_vnni", "amx_int8"}
    everything = {"AVX2": True, "FMA3": True, "AVX512F": True, "AVX512VNNI": True}
    assert _process_view(listed, everything) == (listed, False)  # AMX cannot be checked; nothing says it is hidden
    # an emulator or a hypervisor hides AVX-512 from the process: it goes, and so does what cannot be checked
    assert _process_view(listed, {"AVX2": True, "FMA3": True, "AVX512F": False}) == ({"avx2", "fma"}, True)
    assert _process_view(listed, {}) == (listed, False)  # numpy could not tell: /proc/cpuinfo stands


@needs_emulated_avx2
def test_an_emulated_avx2_cpu_is_fingerprinted_as_the_process_sees_it():
    code = ("import json; from aligngemini_sdk.device import cpu_info, cpu_label, int8_kernel_class; "
            "print(json.dumps([cpu_info(), cpu_label(), int8_kernel_class()]))")
    info, label, kernels = json.loads(on_emulated_avx2("-c", code).stdout)
    assert {"avx2", "fma"} <= set(info["features"]) and not [f for f in info["features"] if "avx512" in f]
    # the host features numpy can check and Haswell lacks (AVX-512 and its VNNI, on this machine) are hidden from
    # the process; when there are some, the flags numpy cannot check (AMX, AVX-VNNI) are dropped with them
    hidden = bool({f for f in set(cpu_info()["features"]) - {"sse4_2", "avx", "avx2", "fma", "f16c"}
                   if f in _CPUID_NAMES})
    assert info["cpuid_differs"] == hidden and ("emulated or masked" in label) == hidden
    if hidden:
        assert kernels == "avx2" and not [f for f in info["features"] if "vnni" in f or "amx" in f]
