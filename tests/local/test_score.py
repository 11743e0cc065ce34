"""`make score`: bulk scoring of a local file through app.bulk, with the same records as the S3 function."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def _score(tiny_artifacts: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODEL_DIR": str(tiny_artifacts), "MODEL_BACKEND": "tflite"}
    return subprocess.run([sys.executable, "-m", "local.score", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_scores_a_csv_with_progress_and_summary(tiny_artifacts: Path, tmp_path: Path) -> None:
    source = tmp_path / "reviews.csv"
    source.write_text("id,text\na,Great little gadget\nb,\nc,Stopped working after a week\n", encoding="utf-8")
    run = _score(tiny_artifacts, str(source), str(tmp_path / "out" / "scored.jsonl"))
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (tmp_path / "out" / "scored.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "b", "c"] and records[1]["error"]["code"] == "invalid_record"
    assert {records[0]["label"], records[2]["label"]} <= {"POSITIVE", "NEGATIVE"}
    summary = json.loads((tmp_path / "out" / "scored.summary.json").read_text())
    assert (summary["records"], summary["scored"], summary["errors"]) == (3, 2, 1)
    assert "scoring reviews.csv" in run.stderr and "100%" in run.stderr  # the progress bar
    assert "3 records (2 scored, 1 errors)" in run.stderr


def test_clear_errors_for_missing_input_bad_header_and_unknown_format(tiny_artifacts: Path, tmp_path: Path) -> None:
    missing = _score(tiny_artifacts, str(tmp_path / "nope.csv"), str(tmp_path / "o.jsonl"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    header = tmp_path / "h.csv"
    header.write_text("id,body\n1,x\n")
    bad = _score(tiny_artifacts, str(header), str(tmp_path / "o.jsonl"))
    assert bad.returncode == 2 and "no text column" in bad.stderr
    unknown = tmp_path / "r.txt"
    unknown.write_text("{}\n")
    fmt = _score(tiny_artifacts, str(unknown), str(tmp_path / "o.jsonl"))
    assert fmt.returncode == 2 and "--format" in fmt.stderr


def test_make_score_requires_input_and_output() -> None:
    run = subprocess.run(["make", "--no-print-directory", "score", "INPUT=x.csv"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode != 0 and "usage: make score INPUT=" in run.stderr
