"""System tests: real server processes under hostile input, load, soak and model updates."""
