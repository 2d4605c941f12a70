"""Date features inside the graph (pipeline.training.dates): seconds since the epoch in, the year and
the calendar's cycles out, computed with exportable arithmetic; checked against Python's calendar on the
edge dates the parity check also feeds the exported model."""

from __future__ import annotations

import datetime
import math

import numpy as np
import torch

from contract.features import Feature
from pipeline.checks.parity import DATE_EDGES
from pipeline.training.dates import SECONDS_PER_YEAR, WIDTH, DateFeatures


def expected_row(seconds: float, year_mean: float, year_std: float) -> list[float]:
    moment = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=seconds)
    days_in_year = 366 if moment.year % 4 == 0 and (moment.year % 100 or moment.year % 400 == 0) else 365
    day_seconds = moment.hour * 3600 + moment.minute * 60 + moment.second
    turns = [
        (moment.month - 1) / 12,
        moment.weekday() / 7,
        (moment.timetuple().tm_yday - 1) / days_in_year,
        day_seconds / 86400,
    ]
    row = [(moment.year - year_mean) / year_std]
    for turn in turns:
        row += [math.sin(2 * math.pi * turn), math.cos(2 * math.pi * turn)]
    return row


def test_date_features_follow_the_calendar_on_edge_dates_and_missing_ones():
    mean, std = 1.6e9, 10 * SECONDS_PER_YEAR
    features = [
        Feature(name="x", kind="numeric"),
        Feature(name="when", kind="date", mean=mean, std=std),
    ]
    module = DateFeatures(features)
    # float32 inputs, as the graph takes them; the expected values come from the float32-rounded seconds.
    days = [1709164800 + 86400 * k for k in range(-3, 4)]  # the week around 2024-02-29
    seconds = np.array([*DATE_EDGES, *days], dtype=np.float32)
    rows = np.stack([np.zeros_like(seconds), seconds], axis=1)
    encoded = module(torch.from_numpy(rows)).numpy()
    assert encoded.shape == (len(seconds), WIDTH) and encoded.dtype == np.float32
    year_mean, year_std = 1970 + mean / SECONDS_PER_YEAR, std / SECONDS_PER_YEAR
    expected = np.array([expected_row(float(s), year_mean, year_std) for s in seconds])
    np.testing.assert_allclose(encoded, expected, atol=2e-6)
    missing = module(torch.tensor([[0.0, math.nan]])).numpy()
    assert (missing == 0).all()  # the mean year, and no phase in any cycle


def test_a_spread_under_a_year_is_standardized_as_one_year():
    module = DateFeatures([Feature(name="d", kind="date", mean=1.7e9, std=86400.0)])
    june = torch.tensor([[1685577600.0], [1717200000.0]])  # 2023-06-01, 2024-06-01
    years = module(june).numpy()[:, 0]
    assert years[1] - years[0] == 1.0  # one year apart: one unit, not 365
