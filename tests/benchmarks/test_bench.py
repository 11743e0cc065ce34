"""The benchmark's own arithmetic and worker protocol (its timings are not asserted: see `make bench`)."""

from __future__ import annotations

import json
from collections.abc import Callable
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


def test_peers_are_rebuilt_when_the_bundled_model_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import engines

    version = {"now": "aaaa"}
    built: list[str] = []
    monkeypatch.setattr(engines, "CACHE", tmp_path)
    monkeypatch.setattr(engines, "bundled_version", lambda: version["now"])

    def builder(name: str, path: Path) -> Callable[[], None]:
        def build() -> None:
            built.append(name)
            path.write_text(version["now"])  # what the peer was derived from
        return build

    peers = {tmp_path / "tf": builder("tf", tmp_path / "tf"), tmp_path / "onnx": builder("onnx", tmp_path / "onnx")}
    engines.prepare(peers)
    assert built == ["tf", "onnx"]
    engines.prepare(peers)  # same model: reused
    assert built == ["tf", "onnx"]
    version["now"] = "bbbb"  # a new bundled model: every peer derived again
    engines.prepare(peers)
    assert built == ["tf", "onnx", "tf", "onnx"]
    assert (tmp_path / "tf").read_text() == (tmp_path / "onnx").read_text() == "bbbb"
    (tmp_path / "onnx").unlink()  # a missing peer alone is rebuilt
    engines.prepare(peers)
    assert built[-1] == "onnx" and len(built) == 5
