"""Torch side of the project: tables in, trained and compiled networks out.

Three layers, each importing only the ones below it (checked: `make lint`): `data/` reads and encodes
tables (pyarrow and numpy, no torch), `training/` holds the deployable module, the SGD loop and what a
run writes, `checks/` compares candidates with the eager module (parity, torch.compile). At the top:
`run` (one model, end to end), `cli`, `config`, `__main__`; beside them `tasks` (the table that drives
the three networks), `distributed` (torchrun), `errors`, `display`.
"""
