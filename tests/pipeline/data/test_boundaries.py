"""Rules at their edges, each of which a one-line slip would change without another test noticing (the
planted bugs of `make mutants`): the task at exactly 20 distinct whole numbers, folding the rarest numeric
category codes, the streamed split's two fractions kept apart, and missing categories counted over the
training rows only."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline.config import RunConfig
from pipeline.data.load import load_dataset
from pipeline.data.streaming import StreamingDataset
from tests.conftest import quiet
from tests.pipeline.data.test_tables import config, rows_table, write


@pytest.mark.parametrize("values,task", [(20, "multiclass"), (21, "regression")])
def test_at_most_20_distinct_whole_numbers_are_classes(tmp_path, values, task):
    """README: at most 20 distinct whole numbers → multiclass. The boundary itself, not 4 and 40."""
    x = np.random.default_rng(0).normal(size=values * 5)  # not 0, 1, 2 ...: a row index is dropped
    table = pa.table({"x": x, "y": np.arange(values * 5) % values})
    said = []
    data = load_dataset(RunConfig(name="t", data=write(table, tmp_path / "t.csv"), target="y"), said.append)
    assert data.task == task
    if task == "multiclass":
        assert any(f"{values} distinct whole numbers (at most 20)" in line for line in said)


def test_max_categories_folds_the_rarest_numeric_codes_too(tmp_path):
    """A numeric column declared categorical, 30 codes, the cap at 5: the 5 most frequent codes are the
    categories (the rest encode like an unseen code), as for text."""
    counts = [max(3, round(300 * 0.75**k)) for k in range(30)]  # 300, 225, 169, 127, 95, 71, ... 3
    codes = np.repeat(np.arange(30), counts)
    rng = np.random.default_rng(0)
    rng.shuffle(codes)
    table = pa.table({"code": codes, "label": np.arange(len(codes)) % 2})
    said = []
    path = write(table, tmp_path / "t.csv")
    data = load_dataset(config(path, ignore=[], categorical=["code"], max_categories=5), said.append)
    (code,) = data.features
    assert code.kind == "categorical" and code.categories == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert code.labels == ["0", "1", "2", "3", "4"]
    assert any(line.startswith("warning: column 'code' has 30 categories") for line in said)


def test_a_streamed_split_keeps_its_validation_and_test_fractions_apart(tmp_path):
    """--val-fraction 0.1 --test-fraction 0.3, streamed: about 10% and 30% (not the other way round)."""
    path = write(rows_table(4000), tmp_path / "t.parquet")
    data = load_dataset(config(path, memory_budget="20KB", val_fraction=0.1, test_fraction=0.3), quiet)
    assert isinstance(data, StreamingDataset)
    shares = {name: rows / 4000 for name, rows in data.rows.items()}
    assert abs(shares["val"] - 0.1) < 0.03 and abs(shares["test"] - 0.3) < 0.03, shares


def test_missing_categories_are_counted_over_the_training_rows(tmp_path):
    """The manifest's missing count of a text column is its training rows' (numeric columns' is tested
    with the streamed statistics), not the whole table's."""
    table = rows_table(600)
    colour = table.column("colour").to_pylist()
    colour = ["NA" if k % 7 == 0 else c for k, c in enumerate(colour)]
    table = table.set_column(table.schema.get_field_index("colour"), "colour", pa.array(colour))
    data = load_dataset(config(write(table, tmp_path / "t.csv")), quiet)
    feature = next(f for f in data.features if f.name == "colour")
    train = data.splits["train"]
    assert feature.missing == sum(colour[k] == "NA" for k in train)
    assert feature.missing < sum(c == "NA" for c in colour)
