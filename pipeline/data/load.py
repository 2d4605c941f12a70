"""Loading a table for training: its columns and task (inferred where the config is silent), the feature
spec from training rows, and the train / validation / test splits — in memory when the encoded table fits
the memory budget (`pipeline.data.dataset`), streamed otherwise (`pipeline.data.streaming`), through one
encoding (`pipeline.data.encoding`) and one schema step (`pipeline.data.schema`)."""

from __future__ import annotations

from pipeline.config import RunConfig
from pipeline.data.base import SplitTable
from pipeline.data.dataset import OverBudget, load_in_memory, row_bytes
from pipeline.data.job import ALONE, Job
from pipeline.data.memory import map_large_buffers, memory_budget, release_free_memory
from pipeline.data.schema import plan_columns
from pipeline.data.streaming import load_streamed
from pipeline.data.table import open_table


def load_dataset(config: RunConfig, log=print, job: Job = ALONE) -> SplitTable:
    """The table of `config`, in memory when its encoded form fits the memory budget, else streamed.
    With several processes (`job`), each reads its own shard; the statistics, the task and the splits
    are agreed on (gathered), so every process builds the same model."""
    table = open_table(config.data, config.delimiter, config.decimal)
    columns = plan_columns(table, config, log)
    budget = memory_budget(config.memory_budget)
    map_large_buffers()
    fits = table.estimated_rows() // job.world <= budget // row_bytes(columns)
    if job.world > 1:
        table = table.shard(job.rank, job.world, job.gather)
    try:
        if not fits:
            raise OverBudget()
        dataset = load_in_memory(table, columns, config, budget, log, job)
    except OverBudget:
        log(f"{table.describe()} is larger than the memory budget ({budget / 2**20:,.0f} MB): streaming it")
        dataset = load_streamed(table, columns, config, budget, log, job)
    release_free_memory()
    if table.format == "csv":
        dataset.dialect = {"delimiter": table.delimiter, "decimal": table.decimal}
    return dataset
