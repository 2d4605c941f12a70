"""Torch side of the project: tables in, trained and compiled networks out.

`data` reads and encodes tables, `tasks` is the table that drives the three networks, `models` holds
the deployable module, `train` the SGD loop, `compiled` the torch.compile stage, `checkpoint` the
saved form, `run` ties them together for one model.
"""
