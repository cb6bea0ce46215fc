"""What this device is: the CPU fingerprint reports carry, and the class of 8-bit instructions INT8 speed depends on."""

from aligngemini_sdk.device import cpu_info, cpu_slug, int8_kernel_class


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
