"""Date features inside the graph: a date column arrives as seconds since 1970-01-01T00:00:00 UTC
(float32, NaN for missing) and leaves as nine encoded columns, so the exported model needs no date code:

    year (standardized), then sine and cosine of: month, day of week, day of year, time of day

The calendar is computed with floor, compare and arithmetic only (exportable to ONNX, no lookup tables,
no searchsorted), in float64 so every step is exact: days since the epoch → civil date by Howard
Hinnant's `civil_from_days` (proleptic Gregorian, eras of 400 years). A missing date encodes as the
training mean year and (0, 0) for every cycle: no phase. The year is standardized with the training
seconds' mean and spread in years (a spread under one year counts as one, so a table of one season does
not make next year's dates extreme).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from contract.features import Feature

SECONDS_PER_DAY = 86400.0
SECONDS_PER_YEAR = 365.2425 * SECONDS_PER_DAY  # the Gregorian year's mean length
ENCODED = ("year", "month", "weekday", "day_of_year", "time_of_day")  # one column, then four pairs
WIDTH = 1 + 2 * (len(ENCODED) - 1)  # encoded columns per date feature


def floor_div(a: torch.Tensor, b: float) -> torch.Tensor:
    return torch.floor(a / b)


def civil_from_days(days: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(year, month 1..12, day of year 0..365, 1 in a leap year else 0) of whole days since 1970-01-01
    (float64, exact)."""
    z = days + 719468.0  # days since 0000-03-01
    era = floor_div(z, 146097.0)
    doe = z - era * 146097.0  # day of the era, 0..146096
    yoe = floor_div(doe - floor_div(doe, 1460.0) + floor_div(doe, 36524.0) - floor_div(doe, 146096.0), 365.0)
    doy_march = doe - (365.0 * yoe + floor_div(yoe, 4.0) - floor_div(yoe, 100.0))  # 0..365, from March 1
    mp = floor_div(5.0 * doy_march + 2.0, 153.0)  # month from March, 0..11
    january_or_february = (mp >= 10.0).to(days.dtype)
    month = mp + 3.0 - 12.0 * january_or_february
    year = yoe + era * 400.0 + january_or_february
    leap = is_multiple(year, 4.0) - is_multiple(year, 100.0) + is_multiple(year, 400.0)
    # Days from January 1: March 1 is day 59 (60 in a leap year); January and February come before.
    day_of_year = torch.where(january_or_february > 0, doy_march - 306.0, doy_march + 59.0 + leap)
    return year, month, day_of_year, leap


def is_multiple(values: torch.Tensor, of: float) -> torch.Tensor:
    return (values - floor_div(values, of) * of == 0).to(values.dtype)


class DateFeatures(nn.Module):
    """(batch, n_features) raw → (batch, WIDTH × n_dates): each date column's encoded columns in turn."""

    def __init__(self, features: list[Feature]):
        super().__init__()
        dates = [j for j, f in enumerate(features) if f.kind == "date"]
        years = [1970.0 + features[j].mean / SECONDS_PER_YEAR for j in dates]
        spreads = [max(features[j].std / SECONDS_PER_YEAR, 1.0) for j in dates]
        self.register_buffer("index", torch.tensor(dates, dtype=torch.long))
        self.register_buffer("year_mean", torch.tensor(years, dtype=torch.float64))
        self.register_buffer("year_std", torch.tensor(spreads, dtype=torch.float64))
        self.width = WIDTH * len(dates)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        seconds = features[:, self.index].to(torch.float64)  # (batch, n_dates)
        present = ~torch.isnan(seconds)
        seconds = torch.where(present, seconds, 0.0)
        days = floor_div(seconds, SECONDS_PER_DAY)
        year, month, day_of_year, leap = civil_from_days(days)
        weekday = days + 3.0 - floor_div(days + 3.0, 7.0) * 7.0  # Monday 0 (1970-01-01 was a Thursday)
        turns = [
            (month - 1.0) / 12.0,
            weekday / 7.0,
            day_of_year / (365.0 + leap),
            (seconds - days * SECONDS_PER_DAY) / SECONDS_PER_DAY,
        ]
        mask = present.to(torch.float64)
        parts = [torch.where(present, (year - self.year_mean) / self.year_std, 0.0)]
        for turn in turns:
            angle = 2.0 * math.pi * turn
            parts += [torch.sin(angle) * mask, torch.cos(angle) * mask]
        encoded = torch.stack(parts, dim=2)  # (batch, n_dates, WIDTH)
        return encoded.flatten(start_dim=1).to(features.dtype)

    def magnitude(self, features: torch.Tensor) -> torch.Tensor:
        """Float64 bound on |encoded| per column (the parity check's round-off scale): the year's
        standardized size, 1 for a cycle."""
        encoded = self.forward(features.float()).double().abs()
        cycles = torch.ones_like(encoded)
        years = torch.arange(0, self.width, WIDTH)
        cycles[:, years] = encoded[:, years] + 1.0
        return cycles
