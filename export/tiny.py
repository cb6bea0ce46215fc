"""Tiny random-weight VLMs with locally trained tokenizers, for tests and benchmarks (no hub access).

Each builder writes a transformers directory (config, safetensors, SentencePiece ``tokenizer.model``,
tokenizer config with a chat template, ``preprocessor_config.json``) that llama.cpp's converter accepts
exactly like a real checkpoint of the same family, so the whole export -> GGUF -> llama.cpp path is
exercised for real at a size that runs in seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aligngemini_sdk.manifest import CLIP_MEAN, CLIP_STD

GEMMA3_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                   "<end_of_image>", "<image_soft_token>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>", "<unk>"]

GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' "
    "else message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>{% elif item['type'] == "
    "'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for item in message['content'] %}{% if item['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

_CORPUS = [
    "Is this image real or AI-generated? Answer with one word: real or fake.",
    "real fake Real Fake photo picture camera generated synthetic diffusion model image",
    "The quick brown fox jumps over the lazy dog. A photo of a cat on a sofa.",
    "user model assistant system answer question one word yes no",
]


def train_sentencepiece(out_dir: Path, specials: list[str], vocab_size: int = 320,
                        bos: str = "<bos>", eos: str = "<eos>", unk: str = "<unk>", pad: str = "<pad>",
                        newline: bool = False) -> Path:
    """Train a tiny SentencePiece BPE model whose special tokens are real pieces; ``newline``: "\\n\\n" and "\\n" are
    pieces of their own (llama.cpp's Idefics3 projector looks them up as tokens), with identity normalisation."""
    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir / "corpus.txt"
    corpus.write_text("\n".join(_CORPUS * 50) + "\n", encoding="utf-8")
    users = [s for s in specials if s not in (bos, eos, unk, pad)]
    prefix = out_dir / "tokenizer"
    spm.SentencePieceTrainer.train(
        input=os.fspath(corpus), model_prefix=os.fspath(prefix), vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, byte_fallback=True, user_defined_symbols=users + (["\n\n", "\n"] if newline else []),
        normalization_rule_name="identity" if newline else "nmt_nfkc", remove_extra_whitespaces=not newline,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece=pad, eos_piece=eos, bos_piece=bos, unk_piece=unk,
        hard_vocab_limit=False, minloglevel=2, num_threads=1)
    corpus.unlink()
    (out_dir / "tokenizer.vocab").unlink(missing_ok=True)
    return prefix.with_suffix(".model")


def write_tokenizer_files(out: Path, specials: list[str], template: str, bos: str | None, eos: str, pad: str,
                           unk: str = "<unk>") -> int:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=os.fspath(out / "tokenizer.model"))
    n = sp.get_piece_size()
    added = {str(sp.piece_to_id(s)): {"content": s, "special": True, "lstrip": False, "rstrip": False,
                                      "normalized": False, "single_word": False} for s in specials}
    cfg = {"tokenizer_class": "LlamaTokenizer", "bos_token": bos, "eos_token": eos, "pad_token": pad,
           "unk_token": unk, "add_bos_token": bos is not None, "add_eos_token": False, "chat_template": template,
           "added_tokens_decoder": added, "model_max_length": 2048, "legacy": False}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    (out / "special_tokens_map.json").write_text(json.dumps({"bos_token": bos, "eos_token": eos, "pad_token": pad,
                                                             "unk_token": unk}))
    return n


def randomize_and_save(model: Any, out: Path, std: float = 0.04) -> None:
    """Random but not degenerate weights (every matrix ~ N(0, std), so label logits differ image to image), saved as
    safetensors."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0, std)
    model.save_pretrained(out, safe_serialization=True)


def build_tiny_gemma3(out_dir: str | os.PathLike[str], seed: int = 0, image_size: int = 224) -> Path:
    """Gemma3ForConditionalGeneration: 2-layer text (hidden 256), 2-layer SigLIP (hidden 128), 16 image tokens."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    out = Path(out_dir)
    train_sentencepiece(out, GEMMA3_SPECIALS)
    n = write_tokenizer_files(out, GEMMA3_SPECIALS, GEMMA3_TEMPLATE, "<bos>", "<eos>", "<pad>")
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=os.fspath(out / "tokenizer.model"))
    torch.manual_seed(seed)
    config = Gemma3Config(
        text_config={"vocab_size": n, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "sliding_window": 128,
                     "max_position_embeddings": 2048, "rope_theta": 10000.0, "rope_local_base_freq": 10000.0,
                     "query_pre_attn_scalar": 64, "layer_types": ["sliding_attention", "full_attention"]},
        vision_config={"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": image_size, "patch_size": 14,
                       "vision_use_head": False},
        mm_tokens_per_image=16, boi_token_index=sp.piece_to_id("<start_of_image>"),
        eoi_token_index=sp.piece_to_id("<end_of_image>"), image_token_index=sp.piece_to_id("<image_soft_token>"),
        pad_token_id=0, bos_token_id=2, eos_token_id=1)
    config.architectures = ["Gemma3ForConditionalGeneration"]
    model = Gemma3ForConditionalGeneration(config).eval()
    randomize_and_save(model, out)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Gemma3ImageProcessor", "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "image_seq_length": 16, "size": {"height": image_size, "width": image_size}, "do_resize": True,
        "do_normalize": True, "do_rescale": True, "rescale_factor": 1 / 255, "resample": 2}))
    return out


def build_tiny_qwen25vl(out_dir: str | os.PathLike[str], seed: int = 0) -> Path:
    """Qwen2_5_VLForConditionalGeneration: 2-layer text (hidden 256), 4-layer vision (hidden 128; the converter maps merger.mlp.2 only with >= 3 blocks)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    train_sentencepiece(out, QWEN_SPECIALS, bos="<|im_start|>", eos="<|im_end|>", pad="<|endoftext|>")
    n = write_tokenizer_files(out, QWEN_SPECIALS, QWEN_TEMPLATE, None, "<|im_end|>", "<|endoftext|>")
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=os.fspath(out / "tokenizer.model"))
    torch.manual_seed(seed)
    text = {"vocab_size": n, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
            "rope_theta": 10000.0, "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]},
            "tie_word_embeddings": False}
    config = Qwen2_5_VLConfig(
        text_config=text, **text,
        vision_config={"depth": 4, "hidden_size": 128, "intermediate_size": 256, "num_heads": 2,
                       "out_hidden_size": 256, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "window_size": 112, "fullatt_block_indexes": [3], "in_chans": 3},
        image_token_id=sp.piece_to_id("<|image_pad|>"), video_token_id=sp.piece_to_id("<|video_pad|>"),
        vision_start_token_id=sp.piece_to_id("<|vision_start|>"),
        vision_end_token_id=sp.piece_to_id("<|vision_end|>"), bos_token_id=sp.piece_to_id("<|im_start|>"),
        eos_token_id=sp.piece_to_id("<|im_end|>"), pad_token_id=sp.piece_to_id("<|endoftext|>"))
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    randomize_and_save(model, out)
    cfg = json.loads((out / "config.json").read_text())  # transformers 4.57 nests it; real checkpoints have it on top
    cfg["architectures"] = ["Qwen2_5_VLForConditionalGeneration"]
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    (out / "preprocessor_config.json").write_text(json.dumps(qwen2vl_preprocessor(max_pixels=448 * 448)))
    return out


def qwen2vl_preprocessor(max_pixels: int) -> dict[str, Any]:
    """A Qwen2-VL / Qwen2.5-VL ``preprocessor_config.json``: 14 px patches merged 2 x 2, CLIP mean/std."""
    return {"image_processor_type": "Qwen2VLImageProcessor", "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
            "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2, "min_pixels": 56 * 56,
            "max_pixels": max_pixels}


IDEFICS3_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>", "<image>", "<fake_token_around_image>",
                     "<global-img>", "<end_of_utterance>"] + [f"<row_{r}_col_{c}>" for r in range(1, 5)
                                                             for c in range(1, 5)]
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")


def idefics3_tokenizer(out: Path) -> Any:
    """SmolVLM-style specials, and "\\n\\n"/"\\n" pieces (llama.cpp's Idefics3 projector looks them up)."""
    import sentencepiece as spm

    train_sentencepiece(out, IDEFICS3_SPECIALS, vocab_size=320 + len(IDEFICS3_SPECIALS), bos="<|im_start|>",
                        eos="<end_of_utterance>", pad="<|endoftext|>", newline=True)
    write_tokenizer_files(out, IDEFICS3_SPECIALS, IDEFICS3_TEMPLATE, "<|im_start|>", "<end_of_utterance>",
                          "<|endoftext|>")
    return spm.SentencePieceProcessor(model_file=os.fspath(out / "tokenizer.model"))


def build_tiny_idefics3(out_dir: str | os.PathLike[str], seed: int = 0) -> Path:
    """Idefics3ForConditionalGeneration (SmolVLM's family): 2-layer Llama text (hidden 192), 2-layer SigLIP
    (hidden 128) at 512 px, 64 image tokens per tile. llama.cpp splits a large image into tiles plus a global view,
    so its prompt has text *between* image chunks (what Gemma3 and Qwen2.5-VL prompts never have)."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration

    out = Path(out_dir)
    sp = idefics3_tokenizer(out)
    torch.manual_seed(seed)
    text = {"vocab_size": sp.get_piece_size(), "hidden_size": 192, "intermediate_size": 384, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
            "rope_theta": 100000.0, "model_type": "llama"}
    config = Idefics3Config(text_config=text, vision_config={"hidden_size": 128, "intermediate_size": 256,
                                                             "num_hidden_layers": 2, "num_attention_heads": 2,
                                                             "image_size": 512, "patch_size": 16},
                            scale_factor=4, image_token_id=sp.piece_to_id("<image>"), tie_word_embeddings=True)
    model = Idefics3ForConditionalGeneration(config).eval()
    randomize_and_save(model, out)
    write_idefics3_config(out)
    return out


def write_idefics3_config(out: Path) -> None:
    """What llama.cpp's converter needs beside the weights: the text part's architecture, a preprocessor config."""
    cfg = json.loads((out / "config.json").read_text())
    cfg["architectures"] = ["Idefics3ForConditionalGeneration"]
    cfg["text_config"]["architectures"] = ["LlamaForCausalLM"]
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Idefics3ImageProcessor", "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "size": {"longest_edge": 512}, "max_image_size": {"longest_edge": 512}, "do_image_splitting": False}))
