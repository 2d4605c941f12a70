"""Schema compatibility at publish (export/run.py, by contract/schema.py's rule): a run whose input
schema breaks the one published under its name is refused before anything is exported, unless
--allow-breaking, which says what breaks and records it in the manifest for the server; new category
values that keep the old codes are compatible."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.run import export_run
from pipeline.config import RunConfig
from pipeline.errors import PipelineError
from pipeline.run import train_run
from tests.conftest import quiet, run_cli

NAME = "penguins"


def write_table(path: Path, islands: list[str], rows: int = 150) -> Path:
    rng = np.random.default_rng(0)
    lines = ["bill,flipper,island,year,species"]
    for i in range(rows):
        species = ("Adelie", "Gentoo", "Chinstrap")[i % 3]
        bill, flipper = 38 + 5 * (i % 3) + rng.normal(), 190 + 10 * (i % 3) + rng.normal()
        lines.append(f"{bill:.1f},{flipper:.1f},{islands[i % len(islands)]},{2007 + i % 3},{species}")
    path.write_text("\n".join(lines) + "\n")
    return path


def train(scratch: Path, variant: str, islands: list[str], ignore=()) -> Path:
    """A run named `penguins` (the same model name for every variant); returns its run directory."""
    table = write_table(scratch / f"{variant}.csv", islands)
    config = RunConfig(
        name=NAME,
        data=str(table),
        target="species",
        task="multiclass",
        categorical=["island"],
        ignore=list(ignore),
        epochs=3,
    )
    train_run(config, scratch / variant, progress=False, log=quiet)
    return scratch / variant / NAME


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    scratch = tmp_path_factory.mktemp("compatibility")
    islands = ["Biscoe", "Dream", "Torgersen"]
    return {
        "base": train(scratch, "base", islands),
        "dropped": train(scratch, "dropped", islands, ignore=["year"]),
        "more": train(scratch, "more", [*islands, "Zeta"]),  # sorts last: the old codes stay
        "recoded": train(scratch, "recoded", ["Alpha", *islands]),  # sorts first: every code moves
    }


def tree(directory: Path) -> dict:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_a_run_that_breaks_the_published_schema_is_refused_and_nothing_changes(runs, tmp_path):
    repo = tmp_path / "models"
    export_run(runs["base"], repo, log=quiet)
    before = tree(repo)
    for variant, change in (
        ("dropped", "feature(s) removed: 'year'"),
        ("recoded", "feature 'island' recodes categories ('Biscoe' 0 → 1, 'Dream' 1 → 2, 'Torgersen' 2 → 3)"),
    ):
        with pytest.raises(PipelineError) as error:
            export_run(runs[variant], repo, keep_versions=True, log=quiet)
        assert str(error.value) == (
            f"penguins: the new input schema breaks the one clients of version 1 use: {change}. Publish it "
            "under a new model name (train with --name), or pass --allow-breaking to replace it anyway"
        )
        assert tree(repo) == before


def test_new_category_values_that_keep_the_codes_are_compatible(runs, tmp_path):
    repo = tmp_path / "models"
    export_run(runs["base"], repo, log=quiet)
    manifest = export_run(runs["more"], repo, keep_versions=True, log=quiet)
    assert manifest["version"] == 2 and "breaking" not in manifest["versions"]["2"]


def test_allow_breaking_publishes_says_what_breaks_and_records_it(runs, tmp_path):
    repo = tmp_path / "models"
    export_run(runs["base"], repo, log=quiet)
    runs_dir = runs["dropped"].parent
    command = [
        "-m",
        "export",
        "export",
        "--runs-dir",
        str(runs_dir),
        "--repository",
        str(repo),
        "--model",
        NAME,
    ]
    refused = run_cli(*command, "--keep-versions")
    assert refused.returncode == 2 and refused.stderr.startswith("error: penguins: the new input schema")
    assert len(refused.stderr.strip().splitlines()) == 1
    allowed = run_cli(*command, "--keep-versions", "--allow-breaking")
    assert allowed.returncode == 0, allowed.stderr
    assert (
        "penguins: breaking the input schema of version 1 (--allow-breaking): feature(s) removed: 'year'"
        in (allowed.stdout)
    )
    manifest = json.loads((repo / NAME / "manifest.json").read_text())
    assert manifest["version"] == 2 and manifest["versions"]["2"]["breaking"] == [
        "feature(s) removed: 'year'"
    ]
    assert "breaking" not in manifest["versions"]["1"]
