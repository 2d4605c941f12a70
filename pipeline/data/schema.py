"""The table's schema: what the config leaves out, inferred from the table and printed with the reason —
which columns are categorical (text ones), the task (from the target's values), how the target is encoded
and the classes' display names — then, from the agreed statistics, the feature spec. Every inference has a
flag that overrides it. The in-memory and streamed paths both finish their schema here: `settle_target`
once the target's statistics are agreed, `features_from` (pipeline.data.encoding) once the features' are."""

from __future__ import annotations

import re
from dataclasses import dataclass
from shlex import quote

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from contract.repository import CLASSIFIERS
from pipeline.config import RunConfig
from pipeline.data.cells import ColumnSummary
from pipeline.data.csv_table import UNNAMED_INDEX
from pipeline.data.encoding import Columns, Moments, Statistics, TargetSpec, is_number
from pipeline.errors import PipelineError

MAX_INFERRED_CLASSES = 20  # a numeric target with at most this many distinct integers is multiclass


@dataclass(frozen=True, kw_only=True)
class TargetPlan:
    """What the target becomes: the task, how its values are encoded, the names of the outputs."""

    task: str
    spec: TargetSpec
    class_names: list[str]  # classification: display name per class index
    target_names: list[str]  # regression: the target column(s)
    dropped: int  # rows without a target value (all processes)

    @property
    def classifier(self) -> bool:
        return self.spec.classifier


def settle_target(stats: Statistics, config: RunConfig, log) -> TargetPlan:
    """The task (configured or inferred), the target's encoding and the class names, from statistics
    every process agreed on; the dropped rows are said once."""
    if not stats.classes and not stats.many_classes:  # before a task is inferred from no values
        raise PipelineError(f"target column {config.target!r} has no values")
    task = resolve_task(config, stats, log)
    spec, class_names = target_spec(config, task, stats)
    if stats.dropped:
        log(f"dropped {stats.dropped} row(s) with a missing {config.target!r}")
    target_names = [] if spec.classifier else [config.target]
    return TargetPlan(
        task=task, spec=spec, class_names=class_names, target_names=target_names, dropped=stats.dropped
    )


def target_scale(plan: TargetPlan, moments: Moments) -> tuple[float, float]:
    """Regression: the training target's mean and standard deviation (1 when constant); (0, 1) else."""
    if plan.classifier:
        return 0.0, 1.0
    return float(moments.mean[0]), float(moments.std()[0]) or 1.0


def plan_columns(table, config: RunConfig, log) -> Columns:
    for role, names in (
        ("target", [config.target]),
        ("categorical", config.categorical),
        ("ignored", config.ignore),
        ("kept", config.keep_columns),
    ):
        absent = [n for n in names if n not in table.columns]
        if absent:
            raise PipelineError(
                f"{role} column(s) {', '.join(map(repr, absent))} not in {table.describe()} "
                f"(columns: {', '.join(c if c.isprintable() else repr(c) for c in table.columns)})"
            )
    features = [c for c in table.columns if c != config.target and c not in config.ignore]
    if not features:
        raise PipelineError(f"{table.describe()}: no feature columns left after the target and ignored ones")
    summaries = table.summarize()
    for note in table.notes:
        log(note)
    decimal = getattr(table, "decimal", ".")
    categorical, dates, booleans, kept = set(config.categorical), set(), set(), []
    for name in features:
        if name in categorical:
            kept.append(name)
            continue
        kind = summaries[name].kind(decimal)
        why = identifier(name, summaries[name], kind)
        if why and name not in config.keep_columns:
            log(f"column {name!r} {why}: left out of the features (keep it: --keep-columns {quote(name)})")
            continue
        kept.append(name)
        if kind == "date":
            dates.add(name)
            log(
                f"inferred: column {name!r} holds ISO dates, so a date feature (year; month, weekday, day of "
                f"the year and time of day as cycles)"
            )
        elif kind == "boolean":
            booleans.add(name)
            log(f"inferred: column {name!r} holds true/false or yes/no, so a boolean feature (1/0)")
        elif kind == "text":
            categorical.add(name)
            log(f"inferred: column {name!r} is text, so categorical (leave it out with --ignore {name})")
    if not kept:
        raise PipelineError(
            f"{table.describe()}: no feature columns left after the target, ignored and identifier ones "
            "(keep an identifier with --keep-columns)"
        )
    return Columns(config.target, kept, categorical, dates, booleans)


MIN_IDENTIFIER_ROWS = 10  # fewer values than this say nothing about a column being an identifier


def identifier(name: str, summary: ColumnSummary, kind: str) -> str:
    """Why the column looks like an identifier (empty when it does not), from the first look at it: a
    different text on every row; a different whole number on every row, forming a range; or whole
    numbers, mostly different, under a name like an identifier's (a subject seen twice keeps its id)."""
    if summary.distinct is None or summary.present < MIN_IDENTIFIER_ROWS:
        return ""
    if kind == "text" and summary.unique:
        return f"has a different text on every row ({summary.present} looked at), like an identifier"
    if kind != "numeric" or summary.integers != summary.present:
        return ""
    values = sorted(int(v) for v in summary.distinct)
    low, high = values[0], values[-1]
    if summary.unique and name == UNNAMED_INDEX and high - low + 1 == len(values) and low in (0, 1):
        return "(the first, without a name) counts the rows: pandas' index or R's row numbers"
    if summary.unique and high - low + 1 <= 2 * len(values):
        return f"is a different whole number on every row ({low}..{high}), like an identifier"
    if ID_NAME.search(name):
        return (
            f"is named like an identifier and holds whole numbers, {len(values)} different ones in "
            f"{summary.present} rows"
        )
    return ""


ID_NAME = re.compile(r"(^|[_\s.-])(id|ID|Id|key|index)$|[a-z](Id|ID)$|^(rownames|row\.names|row)$", re.I)


def resolve_task(config: RunConfig, stats: Statistics, log) -> str:
    """The configured task, or the one the target's values imply (printed with the reason)."""
    if config.task:
        return config.task
    classes = list(stats.classes)
    if stats.many_classes and not stats.target_numeric:
        raise PipelineError(f"target {config.target!r} has over 10,000 distinct text values; set --task")
    if len(classes) == 2 and not stats.many_classes:
        task, why = "binary", f"2 distinct values ({', '.join(sorted(classes, key=class_order(classes)))})"
    elif not stats.target_numeric:
        task, why = "multiclass", f"{len(classes)} distinct values, some of them text"
    elif (
        not stats.many_classes
        and len(classes) <= MAX_INFERRED_CLASSES
        and all(float(c).is_integer() for c in classes)
    ):
        task, why = "multiclass", f"{len(classes)} distinct whole numbers (at most {MAX_INFERRED_CLASSES})"
    else:
        task, why = "regression", "numbers with more than a few distinct values"
    log(f"inferred: task {task}, because target {config.target!r} has {why} (override with --task)")
    return task


def class_order(values):
    """Numeric order for numeric-looking class values (so '10' follows '9'), text order otherwise."""
    return (lambda v: float(v)) if all(is_number(v) for v in values) else str


def target_spec(config: RunConfig, task: str, stats: Statistics) -> tuple[TargetSpec, list[str]]:
    """How the target is encoded, and the class display names."""
    if task not in CLASSIFIERS:
        return TargetSpec(False), []  # a target that is not a number: encode_target names its first cell
    if stats.many_classes:
        raise PipelineError(f"target {config.target!r} has over 10,000 distinct values for a classifier")
    classes = sorted(stats.classes, key=class_order(list(stats.classes)))
    if task == "binary" and config.positive:
        if config.positive not in classes:
            raise PipelineError(
                f"positive value {config.positive!r} never occurs in target {config.target!r} "
                f"(values: {', '.join(classes[:10])})"
            )
        spec, counts = (
            TargetSpec(True, classes, config.positive),
            [
                sum(n for c, n in stats.classes.items() if c != config.positive),
                stats.classes[config.positive],
            ],
        )
        classes = [f"not {config.positive}", config.positive]
    else:
        if task == "binary" and len(classes) > 2:
            raise PipelineError(
                f"binary target {config.target!r} has {len(classes)} values; "
                f"set `positive` to the value of the positive class"
            )
        spec, counts = TargetSpec(True, classes), [stats.classes[c] for c in classes]
    if sum(1 for n in counts if n) < 2:
        only = classes[int(np.argmax(counts))]
        raise PipelineError(
            f"target {config.target!r} has only one class ({only!r}); a classifier needs at least two"
        )
    return spec, class_display_names(classes, config)


def class_display_names(classes: list[str], config: RunConfig) -> list[str]:
    if config.class_names:
        if len(config.class_names) != len(classes):
            raise PipelineError(
                f"class_names has {len(config.class_names)} names for {len(classes)} classes ({classes})"
            )
        return list(config.class_names)
    if config.class_names_csv:
        try:
            table = pa_csv.read_csv(
                config.class_names_csv,
                convert_options=pa_csv.ConvertOptions(column_types={}, strings_can_be_null=False),
                read_options=pa_csv.ReadOptions(use_threads=False),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise PipelineError(f"{config.class_names_csv}: not a readable class-name CSV ({exc})") from None
        lookup = {str(k): str(v) for k, v in zip(*(c.to_pylist() for c in table.columns[:2]))}
        if config.task == "binary" and config.positive:
            positive = lookup.get(config.positive, config.positive)
            return [f"not {positive}", positive]
        return [lookup.get(c, c) for c in classes]
    return classes
