"""Export tooling (needs the ``[export]`` extra: torch, transformers, onnx, ...).

Turns trained experts into bundles: :mod:`.pixel` (ONNX FP32/FP16/INT8 + TensorRT, with the accuracy
gate) and :mod:`.vlm` (GGUF + mmproj through llama.cpp, with the parity gate). Nothing here is imported
by the device-side SDK, except :mod:`.saturation`'s bound, which ``aligngemini verify`` re-derives from a model
file where onnx is installed.
"""
