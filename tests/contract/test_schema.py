"""The model's contract (contract/schema.py): the schema a manifest describes, the compatibility rule
export and the server share, the allowance --allow-breaking records; and the category rule
(contract/features.py) by which text finds its training category."""

from __future__ import annotations

import copy

import pytest

from contract.features import category_code, category_lookup
from contract.schema import breaking_allowed, breaking_changes, describe


def manifest(task="multiclass", features=None, classes=("Adelie", "Chinstrap", "Gentoo")) -> dict:
    return {
        "task": task,
        "features": features
        or [
            {"name": "bill_length_mm", "kind": "numeric"},
            {
                "name": "island",
                "kind": "categorical",
                "labels": ["Biscoe", "Dream"],
                "categories": [0.0, 1.0],
            },
            {"name": "year", "kind": "numeric"},
        ],
        "class_names": list(classes),
        "target_names": [],
        "threshold": 0.5,
    }


def test_the_schema_lists_features_in_order_with_kinds_categories_classes_and_outputs():
    schema = describe(manifest())
    assert schema["task"] == "multiclass"
    assert schema["features"] == [
        {"name": "bill_length_mm", "kind": "numeric"},
        {"name": "island", "kind": "categorical", "categories": ["Biscoe", "Dream"], "codes": [0, 1]},
        {"name": "year", "kind": "numeric"},
    ]
    assert schema["classes"] == ["Adelie", "Chinstrap", "Gentoo"] and "targets" not in schema
    assert list(schema["outputs"]) == ["logits", "probabilities", "label"]
    assert schema["outputs"]["probabilities"].startswith("[rows, 3] probability of each class")
    assert "" in schema["missing_values"] and "na" in schema["missing_values"]
    binary = describe(manifest("binary", classes=("other", "mammal")))
    assert binary["threshold"] == 0.5 and "'mammal'" in binary["outputs"]["probabilities"]
    regression = describe({**manifest("regression"), "class_names": [], "target_names": ["mpg"]})
    assert regression["targets"] == ["mpg"] and list(regression["outputs"]) == ["prediction"]


def changed(edit) -> dict:
    new = copy.deepcopy(manifest())
    edit(new)
    return describe(new)


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda m: m["features"].pop(2), ["feature(s) removed: 'year'"]),
        (
            lambda m: m["features"].append({"name": "sex", "kind": "numeric"}),
            ["feature(s) added: 'sex'"],
        ),
        (
            lambda m: m["features"].reverse(),
            ["features reordered: 'bill_length_mm', 'island', 'year' → 'year', 'island', 'bill_length_mm'"],
        ),
        (
            lambda m: m["features"][2].update(kind="categorical", labels=["2007"], categories=[2007.0]),
            ["feature 'year' changes from numeric to categorical"],
        ),
        (
            lambda m: m["features"][1].update(labels=["Biscoe"], categories=[0.0]),
            ["feature 'island' loses categories 'Dream'"],
        ),
        (  # a value sorted in before the others moves their codes: clients sending codes break
            lambda m: m["features"][1].update(
                labels=["Alpha", "Biscoe", "Dream"], categories=[0.0, 1.0, 2.0]
            ),
            ["feature 'island' recodes categories ('Biscoe' 0 → 1, 'Dream' 1 → 2)"],
        ),
        (
            lambda m: m["class_names"].pop(),
            ["classes change from ['Adelie', 'Chinstrap', 'Gentoo'] to ['Adelie', 'Chinstrap']"],
        ),
        (
            lambda m: m.update(task="binary", class_names=["a", "b"]),
            ["the task changes from multiclass to binary"],
        ),
        # compatible: new categories that keep the old codes, other means and spreads
        (
            lambda m: m["features"][1].update(
                labels=["Biscoe", "Dream", "Torgersen"], categories=[0.0, 1.0, 2.0]
            ),
            [],
        ),
        (lambda m: m["features"][0].update(mean=42.0, std=3.0), []),
    ],
)
def test_what_breaks_a_client_of_the_served_schema(edit, expected):
    assert breaking_changes(describe(manifest()), changed(edit)) == expected


def test_breaking_is_allowed_by_a_version_published_since_with_the_flag():
    recorded = {"versions": {"1": {}, "2": {"breaking": ["feature(s) removed: 'year'"]}, "3": {}}}
    assert breaking_allowed(recorded, served_version=1, version=3)  # 2 allowed it on the way
    assert breaking_allowed(recorded, served_version=1, version=2)
    assert not breaking_allowed(recorded, served_version=2, version=3)  # 3 vs 2: no allowance since
    assert breaking_allowed({"versions": {"1": {"breaking": ["x"]}}}, served_version=1, version=1)  # replaced
    assert not breaking_allowed({"versions": {"1": {}}}, served_version=1, version=1)
    assert not breaking_allowed({"versions": {"²": {"breaking": ["x"]}}}, served_version=1, version=3)
    assert not breaking_allowed({}, served_version=1, version=2)


def test_category_text_matches_without_surrounding_spaces_or_case():
    lookup = category_lookup(["female", "male"], [0.0, 1.0])
    for text, code in [("male", 1.0), ("MALE", 1.0), ("  Male\t", 1.0), ("female", 0.0), (" FEMALE ", 0.0)]:
        assert category_code(lookup, text) == code, text
    assert category_code(lookup, "ma le") is None and category_code(lookup, "unknown") is None


def test_categories_that_differ_only_in_case_keep_their_exact_spelling():
    lookup = category_lookup(["A", "a", "Dream"], [0.0, 1.0, 2.0])
    assert category_code(lookup, "A") == 0.0 and category_code(lookup, " a ") == 1.0
    assert category_code(lookup, "dREAM") == 2.0
    assert lookup == {"A": 0.0, "a": 1.0, "Dream": 2.0, "dream": 2.0}  # no case-free key for A / a
