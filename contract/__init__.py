"""The artifact format's rules, written once: what pipeline/ writes, export/ publishes and serve/ reads.

Standard library only, so every side can import it (the runtime without torch or pyarrow, the data
readers without torch): `repository` (model-directory names, files, manifest keys, versions, the graph's
input and outputs per task), `features` (the feature spec and the missing-value tokens), `tables` (which
files a `--data` spec names, and their format), `publish` (atomic writes and directory swaps).
"""
