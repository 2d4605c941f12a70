"""Reading and encoding tables: splits, statistics from training rows only, and every bad-input case."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import RunConfig, builtin_config, load_config
from pipeline.data.load import load_dataset
from pipeline.errors import PipelineError


def quiet(*args):
    pass


def table(tmp_path, text: str, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def config(csv: str, **values) -> RunConfig:
    return RunConfig(data=csv, **{"name": "t", "target": "y", "task": "binary", **values})


def test_zoo_has_seven_named_classes_and_stratified_splits():
    data = load_dataset(builtin_config("zoo-multiclass"), quiet)
    assert data.class_names == ["mammal", "bird", "reptile", "fish", "amphibian", "bug", "invertebrate"]
    assert len(data.x) == 101 and data.x.shape[1] == 16  # animal_name ignored, class_type is the target
    for split in ("train", "val", "test"):
        assert set(data.y[data.splits[split]]) == set(range(7)), split  # every class in every split
    all_rows = np.concatenate(list(data.splits.values()))
    assert sorted(all_rows) == list(range(101))  # a partition, no row twice


def test_zoo_mammal_is_class_type_1():
    data = load_dataset(builtin_config("zoo-mammal"), quiet)
    assert data.class_names == ["other", "mammal"]
    assert data.y.sum() == 41


def test_auto_mpg_missing_horsepower_and_origin_one_hot():
    data = load_dataset(builtin_config("auto-mpg"), quiet)
    names = [f.name for f in data.features]
    assert "car_name" not in names and "mpg" not in names
    horsepower = data.features[names.index("horsepower")]
    assert np.isnan(data.x[:, names.index("horsepower")]).sum() == 6
    train = data.x[data.splits["train"], names.index("horsepower")]
    assert horsepower.mean == pytest.approx(np.nanmean(train))  # training split only
    assert horsepower.std == pytest.approx(np.nanstd(train))
    origin = data.features[names.index("origin")]
    assert origin.kind == "categorical" and origin.categories == [1.0, 2.0, 3.0]


def test_seeded_split_is_reproducible_and_seed_dependent():
    a = load_dataset(builtin_config("auto-mpg", {"seed": 3}), quiet).splits["test"]
    b = load_dataset(builtin_config("auto-mpg", {"seed": 3}), quiet).splits["test"]
    c = load_dataset(builtin_config("auto-mpg", {"seed": 4}), quiet).splits["test"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_text_categories_get_codes_from_training_rows(tmp_path):
    rows = "\n".join(f"{c},{i % 2},{i}" for i, c in enumerate(["red", "blue", "green"] * 10))
    data = load_dataset(config(table(tmp_path, "color,y,n\n" + rows), categorical=["color"]), quiet)
    color = data.features[0]
    assert color.labels == ["blue", "green", "red"] and color.categories == [0.0, 1.0, 2.0]
    assert data.x[0, 0] == 2.0  # "red"


def test_rows_with_missing_target_are_dropped_and_counted(tmp_path):
    said = []
    rows = "\n".join(f"{i},{i % 2}" for i in range(20)) + "\n5,\n6,?\n"
    data = load_dataset(config(table(tmp_path, "x,y\n" + rows)), said.append)
    assert len(data.y) == 20
    assert said == ["dropped 2 row(s) with a missing 'y'"]


BAD_INPUT = [
    ("missing file", None, {}, "no such file"),
    ("empty file", "", {}, "is empty"),
    ("header only", "x,y\n", {}, "no data rows"),
    ("missing target", "x,z\n1,2\n", {}, "target column(s) 'y' not in"),
    (
        "text in numeric",
        "x,y\n" + "1,0\n2,1\n" * 3 + "abc,0\n",
        {},
        "column 'x' line 8: 'abc' is not a number",
    ),
    ("one class", "x,y\n1,0\n2,0\n3,0\n", {}, "only one class"),
    (
        "class too small",
        "x,y\n" + "1,a\n" * 9 + "2,b\n2,c\n",
        {"task": "multiclass"},
        "class 'b' of 'y' has 1 row(s)",
    ),
    ("all missing column", "x,w,y\n" + "1,,0\n1,,1\n" * 5, {}, "column 'w' has no values"),
    ("ragged row", "x,y\n1,0\n2\n", {}, "line 3: 1 fields where the header has 2"),
    ("duplicate header", "x,x,y\n1,2,0\n", {}, "duplicate column name(s) 'x'"),
    ("infinite value", "x,y\n" + "1,0\n2,1\n" * 3 + "inf,1\n", {}, "'inf' is not a finite number"),
    ("unknown categorical", "x,y\n1,0\n", {"categorical": ["nope"]}, "categorical column(s) 'nope'"),
    ("three values for binary", "x,y\n" + "1,a\n2,b\n3,c\n" * 3, {}, "set `positive`"),
    ("regression text target", "x,y\n1,2\n2,abc\n", {"task": "regression"}, "column 'y' line 3"),
]


@pytest.mark.parametrize("case,text,values,message", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_clear_error(tmp_path, case, text, values, message):
    csv = str(tmp_path / "absent.csv") if text is None else table(tmp_path, text)
    with pytest.raises(PipelineError) as error:
        load_dataset(config(csv, **values), quiet)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_binary_garbage_is_refused(tmp_path):
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(PipelineError, match=r"not UTF-8 text|not a readable CSV"):
        load_dataset(config(str(path)), quiet)


def test_config_rejects_unknown_keys_and_wrong_types(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('csv = "x.csv"\ntarget = "y"\ntask = "binary"\nlearning_rate = 0.1\n')
    with pytest.raises(PipelineError, match=r"unknown config key.*learning_rate"):
        load_config(path)
    path.write_text('csv = "x.csv"\ntarget = "y"\ntask = "binary"\nhidden = "big"\n')
    with pytest.raises(PipelineError, match="'hidden' must be list"):
        load_config(path)
    path.write_text('csv = "x.csv"\ntarget = "y"\ntask = "binary"\nlr = 1\n')
    assert load_config(path).lr == 1.0 and isinstance(load_config(path).lr, float)


@pytest.mark.parametrize(
    "values,message",
    [
        ({"task": "ranking"}, "task 'ranking' must be one of"),
        ({"name": "../escape"}, "must match"),
        ({"activation": "gelu"}, "activation"),
        ({"val_fraction": 0.5, "test_fraction": 0.45}, "leave >= 10%"),
    ],
)
def test_config_validation(values, message):
    with pytest.raises(PipelineError, match=message):
        config("x.csv", **values).validate()
