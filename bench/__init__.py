"""`make bench`: side-by-side measurements printed as ratio tables. Not tests: numbers only.

`inprocess` (runtime vs raw onnxruntime vs torch), `serving` (this server vs a bare stdlib server, batching
on vs off, cold start, memory), `training` (vs scikit-learn), `makeall` (the main job's wall time).
"""
