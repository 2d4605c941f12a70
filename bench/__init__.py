"""`make bench`: side-by-side measurements printed as ratio tables. Not tests: numbers only.

`inprocess` (runtime vs raw onnxruntime vs torch), `serving` (this server vs a bare stdlib server, batching
on vs off, cold start, memory), `training` (vs scikit-learn), `makeall` (the main job's wall time),
`tables` (our default run vs LightGBM, HistGradientBoosting and scikit-learn's MLP on public tables).
`python -m bench --hog` runs every section beside a busy process pinned to one core (`report.cpu_hog`).
"""
