"""Planted bugs (`make mutants`): each mutant is a one-line bug planted alone in a temporary copy of the
repository, and the tests named beside it must then FAIL. A mutant that survives is a behaviour that no
test really checks. `make test` does not run this file (pytest collects only test_*.py).

A mutant's original text must occur exactly once in its file: when a refactoring moves or rewrites that
line, the run stops and names the mutant to update, instead of silently planting nothing. Before the
mutants, the same tests run once on the unchanged copy and must pass, or a "caught" would mean nothing.

    .venv/bin/python tests/mutations.py [--list] [NAME ...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOD = (
    "tests/system/test_grpc_hostile.py::"
    "test_a_connection_flood_leaves_http_the_poll_and_open_channels_working"
)
SIGTERM_PREDICT = (
    "tests/serve/test_predict.py::"
    "test_sigterm_is_handled_like_ctrl_c_and_a_killed_runs_partial_is_removed_by_the_next"
)
TWO_PROCESSES_MERGE = (
    "tests/pipeline/test_distributed.py::"
    "test_two_processes_merge_metrics_and_missing_counts_as_one_process_has_them"
)


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str  # what the planted bug does, in words (the README lists these)
    path: str  # file relative to the repository root
    original: str  # exact text, found exactly once in `path`
    planted: str  # what replaces it
    tests: tuple[str, ...]  # pytest node ids (or files): the smallest set that must catch the bug


MUTANTS = [
    # -- the four bugs of issue 12 -----------------------------------------------------------------------
    Mutant(
        "non-atomic-publish",
        "publication deletes the old model directory, then renames the new one in",
        "contract/publish.py",
        "    elif exchange(staged, dest):",
        "    elif shutil.rmtree(dest) or os.rename(staged, dest) or True:",
        (
            "tests/system/test_faults.py::test_publication_killed_at_every_step_shows_the_old_version_or_the_new",
        ),
    ),
    Mutant(
        "best-weights-not-restored",
        "early stopping keeps the last epoch's weights instead of the best epoch's",
        "pipeline/training/loop.py",
        "    model.load_state_dict(best_state)",
        "    pass",
        ("tests/pipeline/training/test_loop.py::test_early_stopping_restores_the_best_epoch",),
    ),
    Mutant(
        "softmax-over-3",
        "the multiclass head computes softmax(logits / 3)",
        "pipeline/tasks.py",
        "torch.softmax(logits, dim=-1)",
        "torch.softmax(logits / 3, dim=-1)",
        ("tests/pipeline/training/test_models.py::test_heads_follow_the_task_table",),
    ),
    Mutant(
        "compile-checks-eager-against-eager",
        "the torch.compile stage compares eager with eager",
        "pipeline/checks/compiled.py",
        "compiled_outputs = parity.run_batches(compiled, rows)",
        "compiled_outputs = parity.run_batches(eager, rows)",
        ("tests/pipeline/checks/test_compiled.py::test_compile_stage_rejects_a_compiled_model_that_differs",),
    ),
    # -- pipeline/ -----------------------------------------------------------------------------------
    Mutant(
        "nan-imputed-as-zero",
        "a missing numeric value becomes raw 0 instead of the training mean",
        "pipeline/training/models.py",
        "numeric = torch.where(torch.isnan(numeric), self.mean, numeric)",
        "numeric = torch.where(torch.isnan(numeric), 0.0, numeric)",
        ("tests/pipeline/training/test_models.py::test_preprocess_standardizes_imputes_and_one_hot_encodes",),
    ),
    Mutant(
        "threshold-strict",
        "binary label 1 only when p > threshold (the contract is p >= threshold)",
        "pipeline/tasks.py",
        "(probabilities[:, 0] >= threshold)",
        "(probabilities[:, 0] > threshold)",
        ("tests/pipeline/training/test_models.py::test_binary_label_is_positive_at_exactly_the_threshold",),
    ),
    Mutant(
        "labels-compared-on-first-row",
        "parity compares the label of the first row only",
        "pipeline/checks/parity.py",
        "mismatched = np.flatnonzero(ref[:, 0] != got[:, 0])",
        "mismatched = np.flatnonzero(ref[:1, 0] != got[:1, 0])",
        (
            "tests/pipeline/checks/test_compiled.py::test_comparison_catches_nan_and_flipped_labels_but_reports_ties",
        ),
    ),
    # -- export/ -------------------------------------------------------------------------------------
    Mutant(
        "verification-tolerance-1",
        "ONNX verification on CPU runs at tolerance 1.0 instead of 1e-5",
        "export/verify.py",
        "onnxruntime_cpu(onnx_path, tolerance=parity.ATOL, **common)",
        "onnxruntime_cpu(onnx_path, tolerance=1.0, **common)",
        ("tests/export/test_export.py::test_verification_catches_a_perturbed_weight",),
    ),
    Mutant(
        "label-without-triton-reshape",
        "config.pbtxt declares the [batch] label as dims [1] without reshape to []",
        "export/repository.py",
        'lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]',
        'lines += ["    dims: [ 1 ]"]',
        (
            "tests/export/test_export.py::"
            "test_config_pbtxt_parses_as_triton_model_config_and_agrees_with_the_graph[zoo-mammal]",
        ),
    ),
    # -- serve/ --------------------------------------------------------------------------------------
    Mutant(
        "sha256-not-checked",
        "the runtime loads a model.onnx without checking its sha256 against the manifest",
        "serve/model.py",
        "if hashlib.sha256(blob).hexdigest() != expected:",
        "if False:",
        ("tests/serve/test_model.py::test_a_tampered_model_file_is_refused",),
    ),
    Mutant(
        "batch-split-off-by-one",
        "dynamic batching splits the merged outputs one row early",
        "serve/batching.py",
        "bounds = np.cumsum([len(b[0]) for b in batch])[:-1]",
        "bounds = np.cumsum([len(b[0]) for b in batch])[:-1] - 1",
        ("tests/serve/test_http.py::test_concurrent_clients_each_get_their_own_rows_and_batches_form",),
    ),
    Mutant(
        "queue-of-8",
        "the default batching queue holds 8 requests instead of 2048, so 64 clients get 503s",
        "serve/batching.py",
        "max_queue: int = 2048",
        "max_queue: int = 8",
        ("tests/system/test_soak.py::test_soak_mixed_load_every_answer_its_own",),
    ),
    Mutant(
        "too-large-is-400",
        "a body over the limit is answered 400 instead of 413",
        "serve/errors.py",
        "    status = 413",
        "    status = 400",
        ("tests/serve/test_http.py::test_error_status_and_exact_json_then_a_valid_request_works",),
    ),
    Mutant(
        "grpc-bad-request-is-internal",
        "malformed gRPC requests are answered INTERNAL instead of INVALID_ARGUMENT",
        "serve/errors.py",
        '    grpc_code = "INVALID_ARGUMENT"',
        '    grpc_code = "INTERNAL"',
        ("tests/serve/test_grpc.py::test_undecodable_message_is_invalid_argument",),
    ),
    Mutant(
        "policy-serves-one-version",
        "version_policy all and specific serve one version, like latest 1",
        "serve/policy.py",
        'return self.num_versions if self.kind == "latest" else None',
        "return 1",
        ("tests/serve/test_versions.py::test_version_policy_decides_what_answers_over_both_transports",),
    ),
    Mutant(
        "default-is-lowest-version",
        "a request without a version is answered by the lowest version served, not the highest",
        "serve/repository.py",
        "return self.versions[max(self.versions, key=int)] if self.versions else None",
        "return self.versions[min(self.versions, key=int)] if self.versions else None",
        ("tests/serve/test_versions.py::test_version_policy_decides_what_answers_over_both_transports",),
    ),
    Mutant(
        "unload-not-sticky",
        "the poll loads an explicitly unloaded model again when its directory changes",
        "serve/repository.py",
        "if not self.states.get(n, ModelState()).unloaded",
        "if True",
        ("tests/serve/test_versions.py::test_explicit_unload_and_load_over_http_and_grpc",),
    ),
    Mutant(
        "grpc-stops-after-http-drained",
        "on SIGTERM gRPC keeps accepting calls until HTTP has drained, instead of stopping with it",
        "serve/server.py",
        "        self.root.stop_accepting()\n",
        "        pass\n",
        ("tests/serve/test_server.py::test_stop_closes_both_ports_at_once_and_requests_in_flight_finish",),
    ),
    # -- the model's contract (issue 19) ---------------------------------------------------------------
    Mutant(
        "category-case-matters",
        "a category given as 'MALE' or ' Male ' where training saw 'male' is an unseen category",
        "contract/features.py",
        "    return lookup.get(text.lower()) if code is None else code",
        "    return code",
        ("tests/contract/test_schema.py::test_category_text_matches_without_surrounding_spaces_or_case",),
    ),
    Mutant(
        "empty-row-answered",
        "a V1 row that gives no feature gets a confident answer instead of a 400",
        "serve/model.py",
        "                raise self.nothing_given(i, self.unknown_names([row]))",
        "                pass",
        ("tests/serve/test_model.py::test_bad_rows_are_refused_with_the_reason",),
    ),
    Mutant(
        "recoded-categories-compatible",
        "the compatibility rule misses categories whose codes moved",
        "contract/schema.py",
        "    moved = [c for c in old if c in new and new[c] != old[c]]",
        "    moved = []",
        ("tests/contract/test_schema.py::test_what_breaks_a_client_of_the_served_schema",),
    ),
    Mutant(
        "any-allowance-allows",
        "an --allow-breaking record of an older version lets any later break through",
        "contract/schema.py",
        "        if served_version < number <= version or number == version:",
        "        if True:",
        (
            "tests/contract/test_schema.py::test_breaking_is_allowed_by_a_version_published_since_with_the_flag",
        ),
    ),
    Mutant(
        "export-ignores-breaks",
        "export publishes a run that breaks the published input schema without --allow-breaking",
        "export/run.py",
        "    if changes and not allow_breaking:",
        "    if False:",
        (
            "tests/export/test_compatibility.py::test_a_run_that_breaks_the_published_schema_is_refused_and_nothing_changes",
        ),
    ),
    Mutant(
        "server-swaps-in-breaks",
        "the server swaps in a version whose input schema breaks the served one's",
        "serve/repository.py",
        "                    check_schema(previous.default, model)",
        "                    pass",
        (
            "tests/serve/test_versions.py::test_a_version_that_breaks_the_served_schema_is_refused_unless_allowed",
        ),
    ),
    Mutant(
        "stats-count-requests-not-rows",
        "Triton's inference_count counts onnxruntime calls instead of rows",
        "serve/metrics.py",
        "        self.inference_count += rows",
        "        self.inference_count += 1",
        (
            "tests/serve/test_contract.py::test_statistics_count_requests_rows_executions_and_failures_on_both_transports",
        ),
    ),
    Mutant(
        "config-int64-as-strings",
        "the HTTP model configuration writes dims and other 64-bit numbers as strings (protobuf's JSON)",
        "serve/triton.py",
        "    return int(value) if field.type in WIDE_INTEGERS else value",
        "    return value",
        ("tests/serve/test_contract.py::test_model_config_is_config_pbtxt_as_tritons_json_and_protobuf",),
    ),
    Mutant(
        "ignored-inputs-unnamed",
        "a V2 response does not name the inputs it ignored",
        "serve/request.py",
        '        return {"ignored_inputs": json.dumps(self.ignored)} if self.ignored else {}',
        "        return {}",
        ("tests/serve/test_contract.py::test_one_input_rule_for_v1_v2_and_grpc",),
    ),
    Mutant(
        "bytes-read-as-latin-1",
        "BYTES elements that are not UTF-8 are read as Latin-1 instead of refused",
        "serve/request.py",
        '            text = bytes(raw).decode("utf-8")',
        '            text = bytes(raw).decode("latin-1")',
        ("tests/serve/test_contract.py::test_hostile_text_is_refused_with_one_line_on_both_transports",),
    ),
    # -- the data path and the distributed loop (issues 9 and 10) -----------------------------------------
    Mutant(
        "moments-merge-loses-cross-term",
        "merging two batches' statistics forgets the spread between their means (variance too small)",
        "pipeline/data/encoding.py",
        "        self.m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / safe",
        "        self.m2 = self.m2 + other.m2",
        (
            "tests/pipeline/data/test_tables.py::test_streamed_statistics_equal_numpy_on_the_same_training_rows",
        ),
    ),
    Mutant(
        "stream-drops-leftover-rows",
        "a streamed epoch drops the rows a shuffle buffer leaves over after its last whole step",
        "pipeline/training/batches.py",
        "            left = (encoded[whole:], target[whole:])",
        "            left = (encoded[:0], target[:0])",
        (
            "tests/pipeline/test_distributed.py::test_stream_batches_take_whole_steps_across_buffers_and_pad_short_shards",
        ),
    ),
    Mutant(
        "ddp-loss-over-local-rows",
        "each process averages its loss over its own rows, not its share of the global batch",
        "pipeline/training/loop.py",
        "            loss = local * (job.world / (global_rows * per_row))",
        "            loss = local / max(len(encoded) * per_row, 1)",
        (
            "tests/pipeline/test_distributed.py::test_two_processes_give_the_weights_of_one_with_the_same_global_batches",
        ),
    ),
    Mutant(
        "roundoff-bound-unbounded",
        "the parity rule's float32 round-off bound is a million times too wide",
        "pipeline/checks/parity.py",
        "ROUNDOFF_UNITS = 8  # the round-off bound",
        "ROUNDOFF_UNITS = 8e6  # the round-off bound",
        ("tests/export/test_export.py::test_verification_catches_a_perturbed_weight",),
    ),
    # -- reading the user's table as it was meant (issue 20) ------------------------------------------------
    Mutant(
        "identifier-range-kept",
        "a column with a different whole number on every row, 0..n-1, stays a feature",
        "pipeline/data/schema.py",
        "    if summary.unique and high - low + 1 <= 2 * len(values):",
        "    if False:",
        (
            "tests/pipeline/data/test_reading.py::test_an_identifier_is_left_out_and_kept_on_request_where_a_leak_warning_names_it",
        ),
    ),
    Mutant(
        "leak-never-named",
        "a feature that alone predicts the target almost perfectly is not named",
        "pipeline/data/caveats.py",
        "        if score >= LEAK_SCORE and score - baseline >= LEAK_SHARE * (1.0 - baseline):",
        "        if False:",
        (
            "tests/pipeline/data/test_reading.py::test_an_identifier_is_left_out_and_kept_on_request_where_a_leak_warning_names_it",
        ),
    ),
    Mutant(
        "pandas-index-not-recognised",
        "an unnamed first column counting the rows is not told apart as pandas' or R's index",
        "pipeline/data/schema.py",
        "name == UNNAMED_INDEX and high - low + 1 == len(values)",
        "False",
        (
            "tests/pipeline/data/test_reading.py::test_the_unnamed_index_column_of_pandas_and_r_is_recognised_and_dropped",
        ),
    ),
    Mutant(
        "weekday-off-by-one",
        "a date's day of week is counted from a Friday epoch, not Thursday's",
        "pipeline/training/dates.py",
        "    weekday = days + 3.0 - floor_div(days + 3.0, 7.0) * 7.0",
        "    weekday = days + 4.0 - floor_div(days + 4.0, 7.0) * 7.0",
        (
            "tests/pipeline/training/test_dates.py::test_date_features_follow_the_calendar_on_edge_dates_and_missing_ones",
        ),
    ),
    Mutant(
        "every-century-a-leap-year",
        "the calendar forgets that 1900 and 2100 are not leap years",
        "pipeline/training/dates.py",
        "    leap = is_multiple(year, 4.0) - is_multiple(year, 100.0) + is_multiple(year, 400.0)",
        "    leap = is_multiple(year, 4.0)",
        (
            "tests/pipeline/training/test_dates.py::test_date_features_follow_the_calendar_on_edge_dates_and_missing_ones",
        ),
    ),
    Mutant(
        "stray-date-silently-missing",
        "a value in a date column that is not a date becomes a missing value instead of an error",
        "pipeline/data/cells.py",
        '            raise PipelineError(f"column {column!r} {locate(i)}: {exc}") from None',
        "            values.append(None)",
        ("tests/pipeline/data/test_reading.py::test_a_stray_value_in_a_date_column_names_its_line",),
    ),
    Mutant(
        "separator-not-sniffed",
        "a file without --delimiter is always read with its suffix's default separator",
        "contract/tables.py",
        "    return best if counts[best] > 0 else default",
        "    return default",
        ("tests/pipeline/data/test_reading.py::test_the_separator_is_sniffed_from_the_header_and_said",),
    ),
    Mutant(
        "decimal-commas-not-detected",
        "a ;-separated table's decimal commas are not detected (its numbers become categories)",
        "pipeline/data/csv_table.py",
        '        if not self.decimal_given and self.delimiter == ";" and commas:',
        "        if False:",
        (
            "tests/pipeline/data/test_reading.py::test_decimal_commas_are_detected_in_a_semicolon_table_and_said",
        ),
    ),
    Mutant(
        "thousands-separators-kept",
        "numbers written with thousands separators are parsed with their commas (and refused)",
        "pipeline/data/cells.py",
        'pc.replace_substring(text, ",", "")',
        "text",
        (
            "tests/pipeline/data/test_reading.py::test_thousands_separators_in_quoted_numbers_are_read_as_numbers",
        ),
    ),
    Mutant(
        "yes-no-inverted",
        "a yes/no column's text is read the other way round from Parquet's booleans",
        "pipeline/data/cells.py",
        "    return pc.if_else(true, 1.0, pc.if_else(false, 0.0, pa.scalar(None, pa.float64())))",
        "    return pc.if_else(true, 0.0, pc.if_else(false, 1.0, pa.scalar(None, pa.float64())))",
        (
            "tests/pipeline/data/test_reading.py::test_true_false_and_yes_no_text_and_parquet_booleans_are_one_boolean_feature",
        ),
    ),
    Mutant(
        "small-splits-not-warned",
        "a 32-row table's 6-row test split is not warned about",
        "pipeline/data/caveats.py",
        "MIN_METRIC_ROWS = 30",
        "MIN_METRIC_ROWS = 3",
        (
            "tests/pipeline/data/test_reading.py::test_a_small_table_warns_that_its_metrics_are_unstable_and_cv_gives_mean_and_sd",
        ),
    ),
    Mutant(
        "cv-scores-rows-it-trained-on",
        "each cross-validation model trains on every training row, its own fold included",
        "pipeline/training/crossval.py",
        "        fold = view(dataset, rows[folds != k], rows[folds == k])",
        "        fold = view(dataset, rows, rows[folds == k])",
        (
            "tests/pipeline/data/test_reading.py::test_a_small_table_warns_that_its_metrics_are_unstable_and_cv_gives_mean_and_sd",
        ),
    ),
    Mutant(
        "empty-target-infers-a-task",
        "a target without any value gets a task inferred (and printed) before the error",
        "pipeline/data/schema.py",
        "    if not stats.classes and not stats.many_classes:  # before a task is inferred from no values",
        "    if False:",
        (
            "tests/pipeline/data/test_reading.py::test_a_target_without_values_stops_before_any_task_is_inferred",
        ),
    ),
    Mutant(
        "quiet-prints-everything",
        "--quiet prints the resolved config and every inference",
        "pipeline/display.py",
        '    if line.startswith("warning:"):',
        "    if True:",
        ("tests/pipeline/test_cli.py::test_quiet_prints_only_warnings_and_the_final_line",),
    ),
    Mutant(
        "runtime-date-text-refused",
        "the runtime refuses a date feature's ISO text (only seconds pass)",
        "serve/values.py",
        '    if kind == "date" and isinstance(value, str):',
        "    if False:",
        (
            "tests/system/test_your_own_table.py::test_named_features_take_iso_text_and_yes_no_as_training_encodes_them",
        ),
    ),
    Mutant(
        "batch-timestamps-in-milliseconds",
        "batch prediction takes a Parquet timestamp[us] column's ticks as milliseconds",
        "serve/predict/encoding.py",
        '"us": 1e6',
        '"us": 1e3',
        (
            "tests/system/test_your_own_table.py::test_batch_prediction_encodes_the_csv_and_a_typed_parquet_copy_as_training_did",
        ),
    ),
    Mutant(
        "batch-separator-by-suffix",
        "batch prediction reads a ;-separated .csv with commas (the separator not sniffed)",
        "serve/predict/tables.py",
        "        sep = delimiter or sniffed_delimiter(path)",
        "        sep = delimiter or default_delimiter(path)",
        (
            "tests/system/test_your_own_table.py::test_batch_prediction_encodes_the_csv_and_a_typed_parquet_copy_as_training_did",
        ),
    ),
    Mutant(
        "batch-decimal-not-the-trainings",
        "batch prediction reads numbers with a decimal point whatever the training table had",
        "serve/predict/__init__.py",
        'model.manifest.get("training", {}).get("config", {}).get("decimal")',
        "None",
        (
            "tests/system/test_your_own_table.py::test_batch_prediction_encodes_the_csv_and_a_typed_parquet_copy_as_training_did",
        ),
    ),
    Mutant(
        "make-data-unquoted",
        "make passes DATA to the command unquoted (a space or a glob splits it into several arguments)",
        "Makefile",
        "TABLE_FLAGS = $(if $(DATA),--data $(call quote,$(DATA)) --target $(call quote,$(TARGET)),) $(ARGS)",
        "TABLE_FLAGS = $(if $(DATA),--data $(DATA) --target $(TARGET),) $(ARGS)",
        ("tests/pipeline/test_cli.py::test_make_passes_paths_with_spaces_and_globs_as_one_argument",),
    ),
    # -- training defaults (issue 16) --------------------------------------------------------------------
    Mutant(
        "no-warm-up",
        "the schedule starts at the peak learning rate (the warm-up is skipped)",
        "pipeline/training/schedule.py",
        "    if step < plan.warmup_steps:",
        "    if False:",
        ("tests/pipeline/training/test_schedule.py::test_lr_warms_up_linearly_then_decays_by_a_cosine",),
    ),
    Mutant(
        "two-threads-for-small-steps",
        "every step runs on all of the process's threads, however small",
        "pipeline/training/schedule.py",
        "        threads=threads if flops >= ONE_THREAD_FLOPS else 1,",
        "        threads=threads,",
        ("tests/pipeline/training/test_schedule.py::test_small_steps_run_on_one_thread_large_ones_on_all",),
    ),
    Mutant(
        "gradient-not-clipped",
        "the gradient norm is never clipped",
        "pipeline/training/loop.py",
        "        if clip:",
        "        if False:",
        ("tests/pipeline/training/test_schedule.py::test_gradient_norm_is_clipped",),
    ),
    Mutant(
        "restart-keeps-the-diverged-weights",
        "an epoch restarted after a non-finite loss starts from the diverged weights, not the last good ones",
        "pipeline/training/loop.py",
        "                model.load_state_dict(good[0])",
        "                pass",
        (
            "tests/pipeline/training/test_schedule.py::test_a_non_finite_epoch_restarts_from_the_last_good_state_at_half_the_rate",
        ),
    ),
    Mutant(
        "optimizer-imports-dynamo",
        "training steps through optimizer.step(), which imports torch._dynamo on its first call",
        "pipeline/training/loop.py",
        "        sgd_step(optimizer)",
        "        optimizer.step()",
        ("tests/pipeline/training/test_schedule.py::test_training_does_not_import_torch_dynamo",),
    ),
    Mutant(
        "temperature-multiplies",
        "temperature scaling multiplies the logits by T instead of dividing",
        "pipeline/training/calibration.py",
        "    last.weight.div_(temperature)",
        "    last.weight.mul_(temperature)",
        (
            "tests/pipeline/training/test_calibration.py::test_temperature_is_folded_into_the_exported_network",
        ),
    ),
    Mutant(
        "auc-without-ties",
        "ROC AUC ranks tied scores one after the other instead of giving them their average rank",
        "pipeline/metrics.py",
        "    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)",
        "    ranks[order] = np.arange(1, len(score) + 1)",
        ("tests/pipeline/test_metrics.py::test_roc_auc_and_average_precision_match_scikit_learn",),
    ),
    # -- deploy/: the serving image and the Kubernetes manifests (issue 17) ----------------------------------
    Mutant(
        "image-runs-as-root",
        "the image's server runs as root",
        "deploy/Containerfile",
        "USER ${USER_ID}:${USER_ID}",
        "USER 0:0",
        ("tests/deploy/test_image.py::test_image_is_unprivileged_torch_free_and_follows_runtime_json",),
    ),
    Mutant(
        "image-installs-the-batch-extra",
        "the image installs the batch extra (pyarrow) unless told otherwise",
        "deploy/Containerfile",
        "ARG VARIANT=runtime",
        "ARG VARIANT=batch",
        ("tests/deploy/test_image.py::test_image_is_unprivileged_torch_free_and_follows_runtime_json",),
    ),
    Mutant(
        "entrypoint-through-a-shell",
        "the image starts the server from a shell, which as PID 1 never passes SIGTERM on",
        "deploy/Containerfile",
        'ENTRYPOINT ["/opt/venv/bin/python", "-m", "serve", "serve"]',
        'ENTRYPOINT ["/bin/sh", "-c", "/opt/venv/bin/python -m serve serve \\"$@\\"; exit $?", "sh"]',
        ("tests/deploy/test_image.py::test_sigterm_drains_in_flight_requests_over_both_transports",),
    ),
    Mutant(
        "baked-models-keep-their-modes",
        "baked models keep the modes they had (the export's 0700 directories), unreadable by user 1000",
        "deploy/Containerfile",
        "&& chmod -R u=rwX,go=rX ${MODEL_REPOSITORY}",
        "",
        ("tests/deploy/test_image.py::test_baked_models_are_served_without_a_mount",),
    ),
    Mutant(
        "healthcheck-asks-liveness",
        "the image's healthcheck asks the liveness endpoint, so a server with no model is healthy",
        "deploy/healthcheck.py",
        'READY = "/v2/health/ready"',
        'READY = "/v2/health/live"',
        ("tests/deploy/test_image.py::test_healthcheck_fails_while_the_server_is_not_ready",),
    ),
    Mutant(
        "healthcheck-ignores-the-port-argument",
        "the healthcheck reads SERVE_PORT only, not the --port the server was started with",
        "deploy/healthcheck.py",
        'port = option(argv, "--port") or environ.get("SERVE_PORT") or "8000"',
        'port = environ.get("SERVE_PORT") or "8000"',
        ("tests/deploy/test_tools.py::test_healthcheck_asks_where_the_server_listens",),
    ),
    Mutant(
        "repository-mounted-writable",
        "make run-image mounts the model repository writable",
        "deploy/podman.py",
        'f"{Path(repository).resolve()}:{runtime.repository}:ro"',
        'f"{Path(repository).resolve()}:{runtime.repository}"',
        (
            "tests/deploy/test_tools.py::"
            "test_run_command_is_read_only_unprivileged_and_mounts_the_repository_read_only",
        ),
    ),
    Mutant(
        "unreadable-repository-accepted",
        "make run-image starts on a repository its user cannot read (the server then serves nothing)",
        "deploy/podman.py",
        "            if st.st_mode & need != need:",
        "            if False:",
        ("tests/deploy/test_tools.py::test_a_repository_the_container_cannot_read_is_refused_in_one_line",),
    ),
    Mutant(
        "deployment-readiness-on-liveness",
        "the Deployment's readiness probe asks the liveness endpoint (ready before the models load)",
        "deploy/kubernetes/deployment.yaml",
        "path: /v2/health/ready",
        "path: /v2/health/live",
        (
            "tests/deploy/test_manifests.py::test_serving_manifests_run_the_image_as_runtime_json_says"
            "[deployment.yaml:Deployment:tabular-deploy]",
        ),
    ),
    Mutant(
        "serving-runtime-misspelt-field",
        "the ClusterServingRuntime misspells readOnlyRootFilesystem (the API server refuses the manifest)",
        "deploy/kubernetes/kserve.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFileSystem: true",
        (
            "tests/deploy/test_manifests.py::test_every_manifest_validates_against_its_kinds_schema"
            "[kserve.yaml:ClusterServingRuntime:tabular-deploy]",
        ),
    ),
    Mutant(
        "triton-serves-another-repository",
        "the Triton InferenceService reads another storage path than this runtime's",
        "deploy/kubernetes/kserve-triton.yaml",
        "storageUri: pvc://tabular-models/models",
        "storageUri: pvc://tabular-models/model",
        (
            "tests/deploy/test_manifests.py::"
            "test_inference_services_name_their_runtimes_and_serve_the_same_repository",
        ),
    ),
    # -- issue 18: faults that got through -------------------------------------------------------------
    Mutant(
        "grpc-connections-uncapped",
        "the gRPC port accepts any number of connections (a flood exhausts the file descriptors)",
        "serve/grpc/server.py",
        '("grpc.max_allowed_incoming_connections", self.max_connections),',
        '("grpc.max_allowed_incoming_connections", 1 << 30),',
        (FLOOD,),
    ),
    Mutant(
        "grpc-idle-channels-kept",
        "a gRPC connection without calls is never closed (no max_connection_idle)",
        "serve/grpc/server.py",
        '("grpc.max_connection_idle_ms", milliseconds(config.idle_timeout_s)),',
        '("grpc.max_connection_idle_ms", 1 << 30),',
        (FLOOD,),
    ),
    Mutant(
        "grpc-handshake-untimed",
        "a connection that never sends the HTTP/2 preface is kept for grpc core's default 120 s",
        "serve/grpc/server.py",
        '("grpc.server_handshake_timeout_ms", milliseconds(config.header_timeout_s)),',
        '("grpc.server_handshake_timeout_ms", 120_000),',
        (FLOOD,),
    ),
    Mutant(
        "no-descriptors-reserved",
        "the gRPC cap ignores the file descriptor limit, so a flood leaves none for HTTP and the poll",
        "serve/descriptors.py",
        "return max(MIN_CONNECTIONS, min(wanted, (descriptors - FD_RESERVE) // 2))",
        "return wanted",
        (FLOOD,),
    ),
    Mutant(
        "broken-disk-copy-drops-the-served-version",
        "a served version whose file breaks on disk stops serving (503) instead of serving on",
        "serve/repository.py",
        "if kept is not None:  # what was verified and loaded serves on",
        "if False:  # what was verified and loaded serves on",
        (
            "tests/serve/test_versions.py::test_a_served_version_whose_file_breaks_serves_on_until_a_good_file_replaces_it[truncated]",
        ),
    ),
    Mutant(
        "served-version-not-reverified",
        "a served version is kept by its number, without noticing that its model.onnx changed on disk",
        "serve/repository.py",
        "if kept is not None and kept.key == key:",
        "if kept is not None:",
        ("tests/serve/test_versions.py::test_a_version_republished_under_its_own_number_is_served_anew",),
    ),
    Mutant(
        "unreadable-file-remembered",
        "a file that could not be read (EACCES) is refused until it changes, not tried again",
        "serve/repository.py",
        "if not exc.transient:",
        "if True:",
        ("tests/system/test_faults.py::test_files_that_cannot_be_read_are_tried_again_not_remembered[poll]",),
    ),
    Mutant(
        "poll-does-not-retry",
        "the poll reads again only what changed on disk, not what it could not read",
        "serve/repository.py",
        "or self.states[n].retry",
        "or False",
        ("tests/system/test_faults.py::test_files_that_cannot_be_read_are_tried_again_not_remembered[poll]",),
    ),
    Mutant(
        "odd-version-directories-unlisted",
        "directories that are not versions (`007`, `²`) are ignored silently, not listed as refused",
        "serve/store.py",
        "listing.odd[entry.name] = NOT_A_VERSION",
        "pass",
        (
            "tests/serve/test_versions.py::test_directories_that_are_not_versions_are_listed_refused_and_never_stop_the_poll",
        ),
    ),
    Mutant(
        "long-model-name-not-a-client-error",
        "an explicit load of a model name over 255 characters is not answered 400 naming the limit",
        "serve/dataplane.py",
        "    if len(name) > MAX_NAME_LENGTH:",
        "    if False:",
        (
            "tests/serve/test_grpc.py::test_model_names_over_255_characters_are_a_clients_error_naming_the_limit[256]",
        ),
    ),
    Mutant(
        "messages-echo-whole-strings",
        "error messages repeat a client's string whole (a 20,000-character name overflows gRPC metadata)",
        "serve/errors.py",
        "    if len(text) <= limit:",
        "    if True:",
        ("tests/serve/test_grpc.py::test_messages_quote_at_most_100_characters_of_a_clients_string[20000]",),
    ),
    Mutant(
        "predict-sigterm-unhandled",
        "SIGTERM kills `serve predict` outright, leaving its partial file",
        "serve/__main__.py",
        "    signal.signal(signal.SIGTERM, terminate)",
        "    signal.getsignal(signal.SIGTERM)",
        (SIGTERM_PREDICT,),
    ),
    Mutant(
        "stale-partials-kept",
        "`serve predict` leaves the partial files of runs killed with SIGKILL",
        "serve/predict/__init__.py",
        "        remove_stale_partials(out)\n",
        "        pass\n",
        (SIGTERM_PREDICT,),
    ),
    Mutant(
        "predict-into-a-directory",
        "`serve predict --out DIR` reads the whole table before failing",
        "serve/predict/__init__.py",
        "    if out.is_dir():",
        "    if False:",
        ("tests/serve/test_predict.py::test_an_output_that_is_a_directory_is_refused_before_reading",),
    ),
    Mutant(
        "predict-over-its-input",
        "`serve predict` may write its predictions over one of its input files",
        "serve/predict/__init__.py",
        "    if any(os.path.samefile(out, path) for path in inputs):",
        "    if False:",
        ("tests/serve/test_predict.py::test_an_output_that_is_one_of_the_input_files_is_refused[file]",),
    ),
    Mutant(
        "published-directories-private",
        "published run and model directories are 0700 whatever the umask (another user cannot read them)",
        "contract/publish.py",
        "path.mkdir(0o777)",
        "path.mkdir(0o700)",
        ("tests/contract/test_publish.py::test_published_directories_and_files_follow_the_umask[umask-022]",),
    ),
    Mutant(
        "runs-directory-checked-after-training",
        "a runs directory that cannot be written is found only when the trained run is published",
        "pipeline/run.py",
        "    check_writable(runs_dir)  # now, not after the training",
        "    pass  # now, not after the training",
        (
            "tests/pipeline/test_cli.py::test_a_runs_directory_that_cannot_be_written_is_refused_before_training[1-permissions]",
        ),
    ),
    Mutant(
        "full-disk-traceback-in-training",
        "a full disk during training ends in a traceback, not one line and exit 2",
        "pipeline/__main__.py",
        "    except (PipelineError, OSError) as exc:",
        "    except PipelineError as exc:",
        ("tests/pipeline/test_cli.py::test_a_full_disk_during_training_is_one_line_and_publishes_nothing",),
    ),
    Mutant(
        "full-disk-traceback-in-export",
        "a full disk during export ends in a traceback, not one line and exit 2",
        "export/__main__.py",
        "    except OSError as exc:",
        "    except ZeroDivisionError as exc:",
        (
            "tests/export/test_export.py::test_a_full_disk_during_export_is_one_line_and_leaves_the_repository_as_it_was",
        ),
    ),
    Mutant(
        "launcher-sigint-traceback",
        "SIGINT to the --nproc launcher ends in torchrun's traceback, not one line and exit 130",
        "pipeline/distributed.py",
        "    except SignalException as exc:",
        "    except ZeroDivisionError as exc:",
        (
            "tests/pipeline/test_distributed.py::test_sigint_to_the_launcher_stops_the_workers_with_one_line_and_exit_130",
        ),
    ),
    Mutant(
        "workers-outlive-their-launcher",
        "workers of a SIGKILLed --nproc launcher train on and publish",
        "pipeline/distributed.py",
        "        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)",
        "        pass",
        (
            "tests/pipeline/test_distributed.py::test_workers_die_with_a_sigkilled_launcher_and_publish_nothing",
        ),
    ),
    Mutant(
        "resume-fingerprint-without-content",
        "the resume fingerprint covers the files' sizes and times, not their content",
        "pipeline/training/resume.py",
        "(p, os.stat(p).st_size, os.stat(p).st_mtime_ns, sha256_of(Path(p)))",
        "(p, os.stat(p).st_size, os.stat(p).st_mtime_ns)",
        (
            "tests/pipeline/test_distributed.py::test_a_resume_state_is_not_reused_for_a_table_whose_content_changed[csv]",
        ),
    ),
    # -- issue 18: behaviours no test pinned --------------------------------------------------------------
    Mutant(
        "twenty-classes-are-regression",
        "a target of exactly 20 distinct whole numbers is inferred as regression (README: at most 20)",
        "pipeline/data/schema.py",
        "and len(classes) <= MAX_INFERRED_CLASSES",
        "and len(classes) < MAX_INFERRED_CLASSES",
        (
            "tests/pipeline/data/test_boundaries.py::test_at_most_20_distinct_whole_numbers_are_classes[20-multiclass]",
        ),
    ),
    Mutant(
        "numeric-codes-not-folded",
        "--max-categories keeps every numeric code of a categorical column (the warning still printed)",
        "pipeline/data/encoding.py",
        "categories = sorted({float(v) for v in kept})",
        "categories = sorted({float(v) for v in counts})",
        ("tests/pipeline/data/test_boundaries.py::test_max_categories_folds_the_rarest_numeric_codes_too",),
    ),
    Mutant(
        "streamed-fractions-swapped",
        "the streamed split trades --val-fraction and --test-fraction",
        "pipeline/data/streaming.py",
        "fractions = (config.val_fraction, config.test_fraction)",
        "fractions = (config.test_fraction, config.val_fraction)",
        (
            "tests/pipeline/data/test_boundaries.py::test_a_streamed_split_keeps_its_validation_and_test_fractions_apart",
        ),
    ),
    Mutant(
        "same-shuffle-every-epoch",
        "the streamed shuffle buffer draws the same order every epoch",
        "pipeline/training/batches.py",
        "rng = np.random.default_rng([self.seed, self.rank, epoch])",
        "rng = np.random.default_rng([self.seed, self.rank, 0])",
        (
            "tests/pipeline/training/test_batches.py::test_the_streamed_shuffle_draws_another_order_every_epoch",
        ),
    ),
    Mutant(
        "csv-shard-numbered-from-zero",
        "a streamed CSV shard numbers its rows from 0 on every rank: the split depends on the process count",
        "pipeline/data/csv_table.py",
        "segments.append(replace(segment, first_row=position, first_line=line))",
        "segments.append(replace(segment, first_row=0, first_line=line))",
        (
            "tests/pipeline/test_distributed.py::test_a_streamed_csv_splits_its_rows_on_two_processes_as_on_one",
        ),
    ),
    Mutant(
        "metrics-not-merged",
        "under torchrun, validation and test metrics are rank 0's rows' only (the losses merged)",
        "pipeline/training/loop.py",
        "        metrics = parts[0][2]",
        "        metrics = metrics",
        (TWO_PROCESSES_MERGE,),
    ),
    Mutant(
        "missing-counts-not-merged",
        "merging statistics drops the other processes' numeric missing counts",
        "pipeline/data/encoding.py",
        "        self.numeric_missing += other.numeric_missing",
        "        self.numeric_missing = self.numeric_missing",
        (TWO_PROCESSES_MERGE,),
    ),
    Mutant(
        "categorical-missing-over-all-rows",
        "a categorical column's missing count is taken over all rows, not the training rows",
        "pipeline/data/encoding.py",
        "self.categories_missing[name] += in_train.null_count",
        "self.categories_missing[name] += values.null_count",
        (
            "tests/pipeline/data/test_boundaries.py::test_missing_categories_are_counted_over_the_training_rows",
        ),
    ),
    Mutant(
        "resume-without-torch-random-state",
        "a resumed job does not restore torch's random state (dropout masks differ)",
        "pipeline/training/loop.py",
        '        torch.set_rng_state(state["torch_rng"])',
        "        pass",
        ("tests/pipeline/test_distributed.py::test_a_resumed_job_restores_torchs_random_state",),
    ),
    Mutant(
        "grpc-int64-read-as-int32",
        "gRPC typed int64_contents are decoded as 32-bit integers (2**40 gives INTERNAL)",
        "serve/grpc/codec.py",
        '"int64_contents": np.int64,',
        '"int64_contents": np.int32,',
        ("tests/serve/test_grpc.py::test_typed_int64_contents_are_64_bit",),
    ),
    Mutant(
        "parquet-null-category-is-the-first",
        "batch prediction encodes a null text cell of a Parquet categorical column as the first category",
        "serve/predict/encoding.py",
        "indices = encoded.indices.fill_null(len(texts))",
        "indices = encoded.indices.fill_null(0)",
        ("tests/serve/test_predict.py::test_a_null_text_cell_of_a_parquet_categorical_column_is_missing",),
    ),
    Mutant(
        "cpu-tolerance-1e-4",
        "the parity tolerance on CPU is loosened from 1e-5 to 1e-4",
        "pipeline/checks/parity.py",
        "ATOL = RTOL = 1e-5  # float32 on CPU",
        "ATOL = RTOL = 1e-4  # float32 on CPU",
        ("tests/pipeline/checks/test_compiled.py::test_outputs_3e_5_apart_fail_the_cpu_tolerance_of_1e_5",),
    ),
    # -- warm-up and payload logs (issue 17) -----------------------------------------------------------
    Mutant(
        "warmup-skipped",
        "a loaded version is served without its warm-up",
        "serve/repository.py",
        "                        warmed = self.warm(model)",
        "                        warmed = None",
        ("tests/serve/test_warmup.py::test_every_version_runs_every_batch_size_before_the_server_is_ready",),
    ),
    Mutant(
        "warmup-failure-ignored",
        "a version whose warm-up fails is served anyway",
        "serve/warmup.py",
        '            raise ModelLoadError(f"warm-up failed at {rows} rows: {reason}") from None',
        "            break",
        ("tests/serve/test_warmup.py::test_a_version_whose_warm_up_fails_is_refused_with_the_reason",),
    ),
    Mutant(
        "payload-response-id-differs",
        "a logged response gets an id of its own, not its request's",
        "serve/payloads.py",
        '            {**common, "type": RESPONSE_TYPE, "time": rfc3339(entry.answered), "data": response},',
        '            {**common, "id": str(uuid.uuid4()), "type": RESPONSE_TYPE, "data": response},',
        ("tests/serve/test_payloads.py::test_http_and_grpc_requests_are_logged_as_request_response_pairs",),
    ),
    Mutant(
        "payload-sample-ignored",
        "--payload-sample is ignored: every request is logged",
        "serve/payloads.py",
        "        if self.config.sample < 1.0 and random.random() >= self.config.sample:",
        "        if False:",
        ("tests/serve/test_payloads.py::test_a_sample_of_0_logs_nothing_and_a_share_logs_about_that_share",),
    ),
    Mutant(
        "payload-writer-on-request-path",
        "the payload log is written on the request path, not by its background thread",
        "serve/payloads.py",
        "        self.pending.append(entry)",
        "        self.write([entry])",
        (
            "tests/serve/test_payloads.py::test_a_slow_writer_delays_no_request_and_drops_what_does_not_fit_its_queue",
        ),
    ),
    Mutant(
        "payload-queue-unbounded",
        "the payload log's queue is unbounded (a slow disk grows the server's memory)",
        "serve/payloads.py",
        "        if len(self.pending) >= self.config.queue:",
        "        if False:",
        (
            "tests/serve/test_payloads.py::test_a_slow_writer_delays_no_request_and_drops_what_does_not_fit_its_queue",
        ),
    ),
    Mutant(
        "payload-queue-drops-not-counted",
        "payloads dropped because the writer is behind are not counted",
        "serve/payloads.py",
        '            self.dropped["queue_full"].inc()',
        "            pass",
        (
            "tests/serve/test_payloads.py::test_a_slow_writer_delays_no_request_and_drops_what_does_not_fit_its_queue",
        ),
    ),
    Mutant(
        "payload-write-errors-not-counted",
        "payloads a full disk refused are not counted",
        "serve/payloads.py",
        '            self.dropped["write_error"].inc(len(entries) - written)',
        "            pass",
        ("tests/serve/test_payloads.py::test_a_full_disk_fails_no_request_and_counts_the_drops",),
    ),
    # -- found by the training benchmark's scaling case after wave 3 ------------------------------------
    Mutant(
        "leak-check-needs-rows-on-every-rank",
        "the leak check fails on a process whose shard holds no rows (one-row-group Parquet, --nproc 2)",
        "pipeline/data/caveats.py",
        "    xs, ys, total = [np.empty((0, 0), np.float32)], [np.empty(0)], 0",
        "    xs, ys, total = [], [], 0",
        ("tests/pipeline/test_distributed.py::test_a_parquet_file_of_one_row_group_trains_on_two_processes",),
    ),
    # -- issue 16, after wave 3: the network grows with the table ---------------------------------------
    Mutant(
        "hidden-layers-ignore-the-table",
        "a run without `hidden` always gets the small network, whatever its training rows",
        "pipeline/training/schedule.py",
        "    return list(LARGE_HIDDEN if train_rows >= WIDE_ROWS else SMALL_HIDDEN)",
        "    return list(SMALL_HIDDEN)",
        (
            "tests/pipeline/training/test_schedule.py::test_hidden_layers_follow_the_training_rows_unless_given",
        ),
    ),
    Mutant(
        "figures-drawn-in-the-run",
        "the run draws its figures itself (matplotlib's import and the drawing on its own path again)",
        "pipeline/training/figures.py",
        "        self.worker = STARTED.pop() if STARTED else start_worker()",
        "        self.worker = None",
        (
            "tests/pipeline/training/test_figures.py::test_the_command_line_run_draws_its_figures_in_another_process",
        ),
    ),
    Mutant(
        "failed-figure-process-loses-the-figures",
        "when the figures' process fails, the run publishes without its figures",
        "pipeline/training/figures.py",
        "            if not written or not (directory / name).is_file():",
        "            if False:",
        (
            "tests/pipeline/training/test_figures.py::test_a_figure_process_that_fails_leaves_the_figures_to_the_run",
        ),
    ),
    Mutant(
        "failed-run-leaves-its-figure-process",
        "a run that fails leaves its figures' process waiting for numbers",
        "pipeline/run.py",
        "            figures.close()",
        "            pass",
        ("tests/pipeline/training/test_figures.py::test_a_failed_run_stops_its_figure_process",),
    ),
]


class MutantError(Exception):
    """A mutant that cannot be planted as written (its original text is not there exactly once)."""


def plant(root: Path, mutant: Mutant) -> str:
    """Plant `mutant` in the tree at `root`; returns the file's original text, to restore it."""
    path = root / mutant.path
    text = path.read_text()
    found = text.count(mutant.original)
    if found != 1:
        raise MutantError(
            f"{mutant.name}: {mutant.original!r} occurs {found} times in {mutant.path}, not once"
        )
    planted = text.replace(mutant.original, mutant.planted)
    try:
        if path.suffix == ".py":  # a Makefile, Containerfile or manifest is planted as text
            compile(planted, str(path), "exec")
    except SyntaxError as exc:
        raise MutantError(f"{mutant.name}: the planted {mutant.path} does not compile: {exc}") from None
    path.write_text(planted)
    return text


def project_files(root: Path) -> list[str]:
    """Tracked files, plus new ones not yet committed (but never what .gitignore ignores)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and (root / name).is_file()})


def copy_project(root: Path, dest: Path) -> None:
    for name in project_files(root):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)


@dataclass
class Outcome:
    result: str  # caught | survived | error
    by: str  # the first failing test, or why the run was not a verdict
    seconds: float


FAILED_LINE = re.compile(r"^(FAILED|ERROR) (\S+)")


def run_tests(copy: Path, tests: tuple[str, ...] | list[str]) -> Outcome:
    """pytest on `tests` inside the copy, with this interpreter (the project's .venv) and the copy first
    on the path. No bytecode is written, so a planted file is never shadowed by a stale .pyc."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    result = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - start
    failed = [m.group(2) for line in result.stdout.splitlines() if (m := FAILED_LINE.match(line))]
    if result.returncode == 0:
        return Outcome("survived", "", seconds)
    if result.returncode == 1 and failed:
        return Outcome("caught", failed[0], seconds)
    tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
    return Outcome("error", f"pytest exit {result.returncode}:\n    " + "\n    ".join(tail), seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests, run nothing")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(f"error: unknown mutant(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    mutants = [known[n] for n in args.names] if args.names else MUTANTS
    if args.list:
        for m in mutants:
            print(
                f"{m.name}: {m.bug}\n    {m.path}: {m.original!r} -> {m.planted!r}\n    {' '.join(m.tests)}"
            )
        return 0

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
        copy = Path(scratch)
        copy_project(ROOT, copy)
        try:  # every mutant must plant cleanly before any test runs
            for m in mutants:
                (copy / m.path).write_text(plant(copy, m))
        except MutantError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        tests = list(dict.fromkeys(t for m in mutants for t in m.tests))
        print(f"baseline: {len(tests)} test(s) on the unchanged copy ...", flush=True)
        baseline = run_tests(copy, tests)
        if baseline.result != "survived":  # "survived" here means: every test passed
            print(f"error: the tests fail without any mutant ({baseline.by})", file=sys.stderr)
            return 2
        print(f"baseline: passed in {baseline.seconds:.0f} s", flush=True)
        outcomes = {}
        for m in mutants:
            original = plant(copy, m)
            try:
                outcomes[m.name] = run_tests(copy, m.tests)
            finally:
                (copy / m.path).write_text(original)
            o = outcomes[m.name]
            print(f"  {m.name:<36} {o.result:<8} {o.seconds:5.0f} s  {o.by}", flush=True)

    width = max(len(m.name) for m in mutants)
    print(f"\n{'mutant':<{width}}  {'file':<20}  {'result':<8}  {'s':>4}  caught by")
    for m in mutants:
        o = outcomes[m.name]
        print(f"{m.name:<{width}}  {m.path:<20}  {o.result:<8}  {o.seconds:4.0f}  {o.by}")
    caught = sum(o.result == "caught" for o in outcomes.values())
    print(
        f"\n{caught} of {len(mutants)} planted bugs caught; "
        f"{time.monotonic() - started:.0f} s in all (baseline {baseline.seconds:.0f} s)"
    )
    return 0 if caught == len(mutants) else 1


if __name__ == "__main__":
    sys.exit(main())
