"""The rules a table cell and a CSV dialect are read by (contract/), as training and the runtime share
them: ISO dates to seconds, yes/no words to 1/0, separators by name or sniffed from the header."""

from __future__ import annotations

import datetime

import pyarrow as pa
import pytest

from contract.errors import ContractError
from contract.features import boolean_value, date_seconds
from contract.tables import delimiter_from, sniff_delimiter
from pipeline.data.cells import parse_dates
from pipeline.errors import PipelineError

DATES = [
    ("2024-01-05", datetime.datetime(2024, 1, 5)),
    ("2024-02-29T10:30:00", datetime.datetime(2024, 2, 29, 10, 30)),
    ("2024-02-29 10:30", datetime.datetime(2024, 2, 29, 10, 30)),
    ("2024-03-01T10", datetime.datetime(2024, 3, 1, 10)),
    ("2024-03-01T10:30:00Z", datetime.datetime(2024, 3, 1, 10, 30)),
    ("2024-03-01T10:30:00+01:00", datetime.datetime(2024, 3, 1, 9, 30)),
    ("2024-03-01 10:30:00-0230", datetime.datetime(2024, 3, 1, 13, 0)),
    ("2024-03-01T10:30:00.250", datetime.datetime(2024, 3, 1, 10, 30, 0, 250000)),
    ("1969-12-31T23:59:59", datetime.datetime(1969, 12, 31, 23, 59, 59)),
    ("1900-03-01", datetime.datetime(1900, 3, 1)),
    ("2100-02-28", datetime.datetime(2100, 2, 28)),
    ("9999-12-31T23:59:59", datetime.datetime(9999, 12, 31, 23, 59, 59)),
]
NOT_DATES = ["2023-02-29", "2100-02-29", "2024-13-01", "2024-01-05T24:00", "20240105", "5/1/2024", "2024-1-5"]


def test_iso_dates_are_seconds_since_the_epoch_utc_in_training_and_in_the_runtime():
    epoch = datetime.datetime(1970, 1, 1)
    expected = [(moment - epoch).total_seconds() for _, moment in DATES]
    assert [date_seconds(text) for text, _ in DATES] == expected  # the runtime's rule
    texts = pa.array([text for text, _ in DATES])
    assert parse_dates(texts, "d", str).to_pylist() == expected  # training's reader (pyarrow's parser)
    for text in NOT_DATES:
        with pytest.raises(ValueError):
            date_seconds(text)
        with pytest.raises(PipelineError, match=f"column .d. line 3: {text!r} is not a"):
            parse_dates(pa.array(["2024-01-05", text]), "d", lambda i: f"line {i + 2}")


def test_yes_no_words_are_one_and_zero():
    assert [boolean_value(v) for v in ("True", " yes ", "TRUE", "1", "false", "No", "0")] == [
        1,
        1,
        1,
        1,
        0,
        0,
        0,
    ]
    with pytest.raises(ValueError):
        boolean_value("maybe")


def test_separators_by_name_and_sniffed_from_the_header():
    assert [delimiter_from(v) for v in ("\\t", "tab", "TAB", "\t", ";", "|")] == [
        "\t",
        "\t",
        "\t",
        "\t",
        ";",
        "|",
    ]
    for bad in ("ab", "", "\n"):
        with pytest.raises(ContractError):
            delimiter_from(bad)
    assert sniff_delimiter("a;b;c", ",") == ";"
    assert sniff_delimiter("a\tb\tc", ",") == "\t"
    assert sniff_delimiter("a|b", ",") == "|"
    assert sniff_delimiter('"price, in €";"weight, kg";label', ",") == ";"  # commas inside quoted names
    assert sniff_delimiter("only", "\t") == "\t"  # one column: the suffix's default
