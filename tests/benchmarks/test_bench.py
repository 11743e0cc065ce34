"""The benchmark's own arithmetic and worker protocol (its timings are not asserted: see `make bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.run import latency_summary, run_worker
from tests.conftest import BUNDLED


def test_latency_summary_pools_rounds_and_keeps_each_rounds_p50() -> None:
    rounds = [[1.0, 2.0, 3.0, 4.0, 100.0], [5.0, 6.0, 7.0, 8.0, 9.0]]
    summary = latency_summary(rounds)
    assert summary["p50_ms"] == 5.5  # median of the ten requests, not of the two round medians
    assert summary["p99_ms"] == 100.0
    assert summary["p50_rounds_ms"] == [3.0, 7.0]


@pytest.mark.skipif(not (BUNDLED / "model.tflite").is_file(), reason="no bundled model in model_artifacts/")
@pytest.mark.parametrize("engine", ["tflite", "tflite-model-only"])
def test_latency_worker_times_single_requests(engine: str, tmp_path: Path) -> None:
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps({"single": ["Great kettle, boils fast.", "Broke after a week."], "agreement": []}))
    result = run_worker(engine, "latency", texts, timeout=300)
    assert len(result["latencies_ms"]) == 200  # the worker's default request count, cycling over the texts
    assert all(x > 0 for x in result["latencies_ms"])
    assert result["peak_rss_mb"] > 50  # a loaded model, read from /proc
