"""The benchmarks run (at a tiny size): a smoke test of the scripts, not a measurement."""

from __future__ import annotations

import pytest

from bench import inprocess, serving
from pipeline.config import builtin_names


def test_inprocess_section_runs(repository, runs_dir, compiled_reports):
    results, text = inprocess.run(repository, runs_dir, builtin_names(), calls=20, big_calls=3)
    for name in builtin_names():
        assert set(results[name]) == {
            "serve predict()",
            "raw session.run",
            "torch eager",
            "torch.compile",
            "ratios",
        }
        assert results[name]["ratios"]["predict_over_raw_batch1"] > 0
    assert "torch.compile" in text


def test_http_section_runs_with_zero_errors(repository):
    results, _ = serving.run(repository, seconds=1.0, concurrencies=(8,), rounds=1)
    assert [run["body"] for run in results["runs"]] == ["json", "binary"]
    for run in results["runs"]:
        for server in ("ours", "reference"):
            if server in run:
                assert run[server]["requests"] > 0 and run[server]["errors"] == 0, (server, run)
    assert results["batching"]["on"]["rows_per_call"] >= 1.0
    assert results["batching"]["off"]["rows_per_call"] == pytest.approx(1.0)
    assert 0 < results["cold_start"]["median_s"] < 30 and results["rss_mb"]["loaded"] > 0


def test_training_comparison_runs_with_the_batch_and_rate_our_run_planned(tmp_path):
    from bench import training

    results, text = training.run(["auto-mpg"], [0], tmp_path, scale_rows=2048)
    assert results["auto-mpg"]["ours"] > 0 and results["auto-mpg"]["sklearn"] > 0
    assert "training vs scikit-learn" in text


def test_training_scale_case_runs():
    from bench import training  # scikit-learn comes with the `dev` extra, so this runs in CI

    result, text = training.scale_case(4096)
    rates = {key: value for key, value in result.items() if key.endswith("rows_per_s")}
    assert "ours_rows_per_s" in rates and any(key.startswith("sklearn") for key in rates), result
    assert all(value > 0 for value in rates.values()) and text.strip(), result


def test_grpc_section_runs_with_zero_errors(repository):
    from bench import grpc_serving

    results, text = grpc_serving.run(repository, seconds=0.5, rounds=1, concurrencies=(8,))
    runs = results["versus_reference"][8]
    for name in ("ours grpc", "reference grpc", "ours http binary"):
        assert runs[name]["requests"] > 0 and runs[name]["errors"] == 0, (name, runs[name])
    updates = results["during_updates"]
    assert updates["versions_published"] >= 1 and updates["updates"]["errors"] == 0
    for count in (1, 2):
        assert all(r["requests"] > 0 and r["errors"] == 0 for r in results["workers"][count].values())
    assert "--workers 2 vs 1" in text


def test_warmup_section_runs(repository):
    from bench import warmup

    results, text = warmup.run(repository, starts=1, updates=2)
    for name in ("with warm-up", "--no-warmup"):
        assert len(results[name]["first_after_update_ms"]) == 2 and results[name]["update_ratio"] > 0
        assert len(results[name]["first_onnxruntime_call_us"]) == 2
        assert len(results[name]["after_pause_ms"]) == 2 and results[name]["update_over_pause"] > 0
    assert "first request after startup and after an update" in text
    assert set(results["idle_wake"]) == {"0 ms", "5 ms"} and "after an idle pause" in text


def test_payload_log_section_runs_with_zero_errors(repository):
    from bench import payload_log

    results, text = payload_log.run(repository, seconds=1.0, rounds=1)
    for name in ("no payload log", "--payload-sample 1.0", "to /dev/full"):
        assert results[name]["requests"] > 0 and results[name]["errors"] == 0, (name, results[name])
    assert results["--payload-sample 1.0"]["payload_log"]["written"] > 0
    assert results["to /dev/full"]["payload_log"]["dropped write_error"] > 0
    assert results["log_bytes"] > 0 and "p99 with/without" in text
