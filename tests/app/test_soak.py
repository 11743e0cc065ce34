"""Soak: 20,000 mixed invocations in one process; no error, memory flat after warm-up (`make soak`)."""

from __future__ import annotations

import json
import os
import random
import time
from types import ModuleType

import pytest

from tests.app.conftest import call
from tests.app.test_handler import event_with
from tests.synthetic import reviews

pytestmark = pytest.mark.slow


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def test_soak_20000_invocations(handler: ModuleType, lambda_context, logs) -> None:
    if handler.model.backend != "tflite":
        pytest.skip("the soak runs on the production backend")
    rng = random.Random(0)
    texts, _ = reviews(500, seed=11)
    bodies = [json.dumps({"text": t}) for t in texts[:200]] + [
        json.dumps({"texts": rng.sample(texts, rng.randint(2, 8))}) for _ in range(100)] + [
        '{"text": ', json.dumps({"texts": []}), json.dumps({"text": "x" * 3000})]
    events = [event_with(body) for body in bodies]
    total, warm_up, statuses = 20_000, 2_000, {}
    started = time.perf_counter()
    for i in range(total):
        if i == warm_up:
            rss_after_warm_up = _rss_mb()
        status, _, _ = call(handler, events[i % len(events)], lambda_context)
        statuses[status] = statuses.get(status, 0) + 1
        if i % 1000 == 0:
            logs.seek(0)
            logs.truncate()  # the test's log buffer would otherwise grow with the run
    elapsed = time.perf_counter() - started
    growth = (_rss_mb() - rss_after_warm_up) / rss_after_warm_up
    print(f"\nsoak: {total} invocations in {elapsed:.1f}s ({total / elapsed:.0f}/s), statuses {statuses}, "
          f"RSS after warm-up {rss_after_warm_up:.1f} MB, growth {growth:+.2%}")
    assert set(statuses) <= {200, 400, 422}
    assert 500 not in statuses
    assert growth < 0.05
