"""Torch → ONNX: export (`onnx`), parity verification (`verify`) and the Triton-layout model repository
(`repository`). May import `pipeline` to rebuild models from checkpoints; never imports `serve`."""
