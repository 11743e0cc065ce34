"""make tune's arithmetic and its committed result (no timing here: the numbers come from benchmarks/tune.py)."""

from __future__ import annotations

import json

import pytest

from benchmarks.tune import MEMORY_SIZES, TOLERANCE, cost_per_million, recommend
from tests.conftest import ROOT

TUNING = ROOT / "benchmarks" / "results" / "tuning.json"
FIELDS = {"memory_mb", "cold_start_s", "p50_ms", "p99_ms", "throughput_per_s", "cost_per_million_usd"}


def test_cost_bills_whole_milliseconds_at_the_stated_prices() -> None:
    # 1,024 MB for 10 ms: 0.01 GB-s x $0.0000166667 per request, plus $0.20 per million requests.
    assert cost_per_million(10.0, 1024) == pytest.approx(1e6 * 0.01 * 0.0000166667 + 0.20, abs=1e-4)
    assert cost_per_million(9.2, 1024) == cost_per_million(10.0, 1024)  # 9.2 ms is billed as 10 ms
    assert cost_per_million(0.3, 512) == pytest.approx(1e6 * 0.5 * 0.001 * 0.0000166667 + 0.20, abs=1e-4)


def row(memory_mb: int, cold: float, p99: float, cost: float) -> dict:
    return {"memory_mb": memory_mb, "cold_start_s": cold, "p50_ms": 1.0, "p99_ms": p99, "throughput_per_s": 1.0,
            "cost_per_million_usd": cost}


def test_recommendation_is_the_cheapest_size_close_to_the_best() -> None:
    rows = [row(512, 4.0, 300, 0.5), row(1024, 2.1, 110, 0.6), row(1769, 2.0, 100, 0.8), row(3008, 2.0, 100, 1.4)]
    assert recommend(rows)["memory_mb"] == 1024
    rows[1]["p99_ms"] = 100 * TOLERANCE + 1  # no longer close enough to the best p99
    assert recommend(rows)["memory_mb"] == 1769


def test_committed_tuning_holds_every_memory_size_in_the_schema() -> None:
    result = json.loads(TUNING.read_text())
    sizes = [r["memory_mb"] for r in result["memory_sizes"]]
    assert set(MEMORY_SIZES) <= set(sizes)
    for entry in result["memory_sizes"]:
        assert FIELDS <= set(entry), entry
        assert all(isinstance(entry[k], int | float) and entry[k] > 0 for k in FIELDS)
    assert result["recommended"]["memory_mb"] in sizes
    assert TUNING.with_suffix(".png").is_file()


def test_template_default_follows_the_tuning() -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    recommended = json.loads(TUNING.read_text())["recommended"]["memory_mb"]
    assert template["Parameters"]["MemorySize"]["Default"] == recommended

