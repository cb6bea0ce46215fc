"""llama.cpp semantic runtime pieces: label token candidates and the restricted softmax."""

import numpy as np
import pytest

from aligngemini_sdk.errors import RuntimeUnavailableError
from aligngemini_sdk.resize import area
from aligngemini_sdk.runtimes.llama import (
    ggml_amx_hazard,
    label_token_ids,
    restricted_softmax_fake,
    split_label_ids,
)


def test_label_candidates_cover_spacing_and_case_and_skip_bare_spaces():
    vocab = {"fake": [10], " fake": [11], "Fake": [12], " Fake": [13], "real": [20], " real": [21], "Real": [22],
             " Real": [23]}
    ids = label_token_ids(lambda s: vocab.get(s, [99]), ["fake"], piece=lambda t: "x")
    assert sorted(ids) == [10, 11, 12, 13]
    # SentencePiece may split " fake" into ["▁", "fake"]: the bare "▁" is not a decision token
    sp = {" fake": [5, 10], "fake": [10], "Fake": [12], " Fake": [5, 12]}
    ids = label_token_ids(lambda s: sp.get(s, [10]), ["fake"], piece=lambda t: "\u2581" if t == 5 else "f")
    assert 5 not in ids and set(ids) == {10, 12}


def test_multi_piece_words_use_their_first_piece():
    assert label_token_ids(lambda s: [7, 8, 9], ["generated"]) == [7]


def test_shared_ids_are_dropped_and_total_clash_fails():
    assert split_label_ids([1, 2], [2, 3]) == ([1], [3], [2])
    with pytest.raises(RuntimeUnavailableError):
        split_label_ids([1], [1])


def test_restricted_softmax():
    logits = np.zeros(50)
    logits[[1, 2]] = [2.0, 0.0]
    logits[3] = 1.0
    p = restricted_softmax_fake(logits, [1, 2], [3])
    e = np.exp([2.0, 0.0, 1.0])
    assert p == pytest.approx((e[0] + e[1]) / e.sum())
    big = np.full(10, 1e4)
    assert restricted_softmax_fake(big, [0], [1]) == pytest.approx(0.5)  # stable with large logits


@pytest.mark.gguf
@pytest.mark.slow
def test_a_prompt_with_text_between_image_chunks_runs(tmp_path):
    """llama.cpp cuts a large image into tiles and a global view for Idefics3/SmolVLM, with text between the image
    chunks: each chunk must start where the previous one ended (a regression: positions restarted after text)."""
    from aligngemini_sdk.export.tiny import build_tiny_idefics3
    from aligngemini_sdk.export.vlm import build_prompt, converter_dir, run_converter
    from aligngemini_sdk.manifest import SemanticBranchSpec
    from aligngemini_sdk.runtimes.llama import LlamaSemantic

    hf = build_tiny_idefics3(tmp_path / "hf")
    conv = converter_dir()
    run_converter(conv, hf, tmp_path / "text.gguf", "f16")
    run_converter(conv, hf, tmp_path / "mmproj.gguf", "f16", mmproj=True)
    spec = SemanticBranchSpec(artifacts={}, default_artifact="f16", labels={"fake": ["fake"], "real": ["real"]},
                              prompt={"text": build_prompt(hf, "Is this image real or AI-generated? real or fake.")},
                              n_ctx=1024, image_max_side=448)
    rt = LlamaSemantic(tmp_path / "text.gguf", tmp_path / "mmproj.gguf", spec, threads=1)
    try:
        rng = np.random.default_rng(0)
        img = rng.integers(0, 256, size=(448, 336, 3), dtype=np.uint8)
        kinds = [kind for kind, _ in rt.prompt_layout(rt.fit(img))]
        big = rng.integers(0, 256, size=(900, 600, 3), dtype=np.uint8)  # shrunk to 448 on its longer side, exactly
        np.testing.assert_array_equal(rt.fit(big), area(big, 448, 299))
        assert kinds.count("image") >= 2 and "text" in kinds[kinds.index("image"):][1:-1]  # text between images
        p1, p2 = rt.predict_one(img), rt.predict_one(img)  # the second call reuses the cached text prefix
        assert 0.0 < p1 < 1.0 and p1 == pytest.approx(p2, abs=1e-6)
        assert rt.last_timing["prefix_reused"] == 1.0
    finally:
        rt.close()


def test_a_build_with_ggml_amx_kernels_is_refused_only_on_a_cpu_that_would_run_them():
    """llama-cpp-python 0.3.36's AMX kernels segfault on Q4_K_M (llama.cpp#20824, and here on a 2-core AMX Xeon): the
    branch refuses with the rebuild command instead of taking the process down; other builds and CPUs are fine."""
    amx_build = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |"
    portable = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | REPACK = 1 |"
    reason = ggml_amx_hazard(amx_build, ["avx2", "avx512_vnni", "amx_int8"])
    assert reason and "GGML_NATIVE=OFF" in reason and "20824" in reason
    assert ggml_amx_hazard(portable, ["avx2", "amx_int8"]) is None
    assert ggml_amx_hazard(amx_build, ["avx2", "avx512_vnni"]) is None  # a CPU without AMX never takes that path


def test_this_installs_llama_cpp_build_is_one_the_branch_runs():
    llama_cpp = pytest.importorskip("llama_cpp", reason="needs the [gguf] extra (llama-cpp-python)")
    from aligngemini_sdk.device import cpu_info

    assert ggml_amx_hazard(llama_cpp.llama_print_system_info().decode(), cpu_info()["features"]) is None
