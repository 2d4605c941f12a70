"""Checks against the eager module: what "outputs match" means (`parity`) and the torch.compile stage
(`compiled`); export/verify.py runs the same rule on ONNX."""
