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
        if path.suffix == ".py":  # a Containerfile or a manifest is planted as text
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
