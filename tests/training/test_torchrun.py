"""`torchrun --nproc_per_node 2` on the CPU (gloo): one DDP job, one artifact contract, written by rank 0 only.

Each process runs ``python -m training train`` through a small entry script that records, with a
Python audit hook, every file it opens for writing, renames or removes under the run's folder.
Writes from native code (safetensors, torch.save, TensorFlow) are not audited: that the other rank
never gets to the export is shown by its log, which ends with its "rank 0 exports" line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_original_csv
from tests.training.test_pipeline import CONTRACT

TORCHRUN = ROOT / ".venv" / "bin" / "torchrun"
TIMEOUT_S = 600
BATCH_SIZE = 32
MAX_STEPS = 4

ENTRY = '''
import json, os, sys

root = os.environ["AUDIT_ROOT"]
written = set()


def audit(event, args):
    if event == "open":
        path, mode, flags = args
        if not (isinstance(mode, str) and any(c in mode for c in "wax+")) and not (flags or 0) & (os.O_WRONLY | os.O_RDWR):
            return
        paths = [path]
    elif event in ("os.rename", "os.replace"):
        paths = [args[0], args[1]]
    elif event in ("os.remove", "os.rmdir", "shutil.rmtree"):
        paths = [args[0]]
    else:
        return
    for p in paths:
        if isinstance(p, (str, bytes, os.PathLike)):
            p = os.path.abspath(os.fsdecode(p))
            if p.startswith(root + os.sep):
                written.add(os.path.relpath(p, root))


sys.addaudithook(audit)
from training.cli import main

code = main(sys.argv[1:])
with open(os.path.join(os.environ["AUDIT_OUT"], "rank%s.json" % os.environ["RANK"]), "x") as handle:
    json.dump(sorted(written), handle)
sys.exit(code)
'''


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> dict:
    if not TORCHRUN.is_file():
        pytest.skip(f"{TORCHRUN} missing: torch is not installed in .venv")
    work = tmp_path_factory.mktemp("torchrun")
    audit = tmp_path_factory.mktemp("torchrun_audit")  # outside `work`: the entry script writes here itself
    entry = audit / "entry.py"
    entry.write_text(ENTRY)
    data = write_original_csv(work / "reviews.csv")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(ROOT), "AUDIT_ROOT": str(work), "AUDIT_OUT": str(audit),
           "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_OFFLINE": "1"}
    command = [str(TORCHRUN), "--nnodes", "1", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), "--log-dir", str(work / "logs"), "--redirects", "3",
               str(entry), "train", "--data", str(data), "--base-model", str(tiny_base),
               "--output", str(work / "artifacts"), "--run-dir", str(work / "run"), "--max-steps", str(MAX_STEPS),
               "--max-length", "16", "--batch-size", str(BATCH_SIZE), "--warmup-steps", "0",
               "--learning-rate", "1e-3", "--seed", "7", "--average-checkpoints"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        console, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and both workers
        console, _ = process.communicate()
        pytest.fail(f"torchrun did not finish in {TIMEOUT_S} s:\n{console[-3000:]}")
    logs = {int(p.parent.name): p.read_text(errors="replace") for p in (work / "logs").glob("*/attempt_0/*/stderr.log")}
    audited = {int(p.stem.removeprefix("rank")): set(json.loads(p.read_text())) for p in audit.glob("rank*.json")}
    return {"code": process.returncode, "console": console, "work": work, "logs": logs, "written": audited}


def test_both_processes_exit_cleanly(torchrun_run: dict) -> None:
    assert torchrun_run["code"] == 0, torchrun_run["console"][-3000:] + "\n".join(
        log[-2000:] for log in torchrun_run["logs"].values())
    assert sorted(torchrun_run["logs"]) == [0, 1]
    assert sorted(torchrun_run["written"]) == [0, 1]  # both ran the command to its end


def test_one_complete_contract_and_nothing_else(torchrun_run: dict) -> None:
    work = torchrun_run["work"]
    output = work / "artifacts"
    for name in CONTRACT:
        assert (output / name).exists(), name
    assert sorted(p.name for p in work.iterdir()) == ["artifacts", "logs", "reviews.csv", "run"]  # no second output


def test_both_ranks_trained_together(torchrun_run: dict) -> None:
    metadata = json.loads((torchrun_run["work"] / "artifacts" / "model.json").read_text())
    training = metadata["training"]
    assert training["world_size"] == 2
    assert training["steps"] == MAX_STEPS
    # Each step saw one batch per process: twice the examples of a one-process run of the same steps.
    assert training["epochs_run"] == pytest.approx(MAX_STEPS * BATCH_SIZE * 2 / training["data"]["train"], abs=0.01)
    assert metadata["export"]["tflite_validation_agreement"]["agreement"] >= 0.99
    # The average of the epoch checkpoints (3 steps per epoch with two processes) is measured by both
    # processes together (a sharded evaluation) before rank 0 decides and writes.
    averaging = training["checkpoint_average"]
    assert averaging["checkpoints"] == ["checkpoint-3", "checkpoint-4"]
    assert "validation_loss" in averaging


def test_only_rank_zero_exports(torchrun_run: dict) -> None:
    logs = torchrun_run["logs"]
    version = json.loads((torchrun_run["work"] / "artifacts" / "model.json").read_text())["version"]
    assert f"model {version} written to" in logs[0]
    assert "process 1 of 2: training and evaluation done, rank 0 exports" in logs[1]
    for line in ("PyTorch -> TensorFlow", f"model {version} written to", "Assets written to"):
        assert line not in logs[1], line


def test_rank_one_writes_nothing_but_its_checkpoint_state(torchrun_run: dict) -> None:
    """Rank 1 opens no file for writing from Python; the Trainer's native writes give it one RNG state per checkpoint.

    The same audit hook records rank 0's writes (the whole contract, the run's log history), so
    its empty list for rank 1 is a measurement, not a hook that never ran.
    """
    written = torchrun_run["written"]
    assert {"artifacts/model.json", "artifacts/MODEL_CARD.md", "run/log_history.json"} <= written[0]
    assert written[1] == set()
    checkpoints = sorted((torchrun_run["work"] / "run" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints
    for checkpoint in checkpoints:  # torch.save (native) of each process's RNG state, kept to resume exactly
        assert sorted(p.name for p in checkpoint.glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]


def test_a_one_process_run_records_world_size_one(tiny_artifacts: Path) -> None:
    assert json.loads((tiny_artifacts / "model.json").read_text())["training"]["world_size"] == 1
