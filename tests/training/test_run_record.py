"""The run record: a fine-tune without TensorFlow writes it, a resumed run reads it and refuses another split."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from training.data.dataset import Examples
from training.steps.run_record import RunRecordError, check_split, find_record, split_hash, summary

# Python source that makes TensorFlow (and Keras, and LiteRT) look not installed, as on a GPU machine without them:
# importlib.util.find_spec answers None (what transformers asks) and an import raises ImportError.
BLOCK_TF = (
    "import sys\n"
    "for _name in ('tensorflow', 'tf_keras', 'keras', 'ai_edge_litert'):\n"
    "    sys.modules[_name] = None\n"
)
LOADED_TF = "[m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')]"


def _common(data: Path) -> list[str]:
    return ["--data", str(data), "--max-steps", "2", "--max-length", "64", "--warmup-steps", "0",
            "--learning-rate", "1e-3", "--seed", "7"]


@pytest.fixture(scope="module")
def fine_tuned_without_tf(tiny_training_run: dict[str, Path], tiny_base: Path,
                          tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train --fine-tune-only`` in a process where TensorFlow cannot be imported: the run directory."""
    run_dir = tmp_path_factory.mktemp("gpu_like") / "run"
    argv = ["train", *_common(tiny_training_run["data"]), "--base-model", str(tiny_base),
            "--output", str(run_dir / "artifacts"), "--run-dir", str(run_dir), "--fine-tune-only"]
    code = (BLOCK_TF + "from training.cli import main\n"
            f"code = main({argv!r})\n"
            f"assert not {LOADED_TF}, {LOADED_TF}\n"
            "import importlib.util; assert importlib.util.find_spec('tensorflow') is None\n"
            "sys.exit(code)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run_dir


def test_fine_tune_only_runs_without_tensorflow_and_writes_the_record(fine_tuned_without_tf: Path) -> None:
    run_dir = fine_tuned_without_tf
    assert (run_dir / "final_model" / "model.safetensors").is_file()
    assert not (run_dir / "artifacts").exists()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["device"].startswith("CPU (")  # no CUDA here
    assert record["steps"] == 2
    assert record["fine_tune_wall_s"] > 0
    assert set(record["versions"]) >= {"python", "torch", "transformers"}
    assert "tensorflow" not in record["versions"]
    assert len(record["train_sha"]) == len(record["validation_sha"]) == 16
    assert record["train_examples"] == 192 and record["validation_examples"] == 24
    assert record["argv"][:2] == ["python", "-m"] and "--fine-tune-only" in record["argv"]
    # the model directory carries a copy, so copying final_model/ alone carries the record
    assert json.loads((run_dir / "final_model" / "run.json").read_text()) == record


def test_a_resumed_run_says_where_each_half_ran(fine_tuned_without_tf: Path, tiny_training_run: dict[str, Path],
                                                tiny_base: Path, tmp_path: Path) -> None:
    """A run directory carried back from another machine (its record names that machine) is finished here:
    model.json and the card name the fine-tune's device from the record and this machine as the finisher."""
    from training.cli import main

    run_dir = tmp_path / "carried"
    shutil.copytree(fine_tuned_without_tf, run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    record.update(device="NVIDIA H200", versions={"python": "3.12.3", "torch": "2.11.0+cu130"})
    (run_dir / "run.json").write_text(json.dumps(record))
    before = (run_dir / "final_model" / "model.safetensors").read_bytes()
    shutil.rmtree(run_dir / "checkpoints")  # not carried back
    output = tmp_path / "artifacts"
    assert main(["train", *_common(tiny_training_run["data"]), "--base-model", str(tiny_base), "--output", str(output),
                 "--run-dir", str(run_dir), "--resume", "--average-checkpoints"]) == 0
    assert (run_dir / "final_model" / "model.safetensors").read_bytes() == before  # not trained again
    training = json.loads((output / "model.json").read_text())["training"]
    assert training["device"] == "NVIDIA H200"
    assert training["fine_tune"]["device"] == "NVIDIA H200"
    assert training["fine_tune"]["steps"] == 2
    assert training["fine_tune"]["record"] == str(run_dir / "run.json")
    assert training["fine_tune"]["validation_sha"] == record["validation_sha"]
    assert training["finished_on"]["device"].startswith("CPU (")
    assert "tensorflow" in training["finished_on"]["versions"]
    assert training["checkpoint_average"]["used"] is False  # decided (or not) where it ran, not re-decided here
    assert "checkpoints were not carried back" in training["checkpoint_average"]["reason"]
    card = (output / "MODEL_CARD.md").read_text()
    assert "Fine-tune: NVIDIA H200 (python 3.12.3, torch 2.11.0+cu130), 2 steps" in card
    assert "Finished (cut, PyTorch evaluation, export, calibration, both backends) on CPU (" in card


def test_a_resumed_run_refuses_another_split(fine_tuned_without_tf: Path, tiny_training_run: dict[str, Path],
                                            tiny_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import main

    run_dir = tmp_path / "carried"
    shutil.copytree(fine_tuned_without_tf, run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    rebuilt = record["validation_sha"]
    record["validation_sha"] = "0123456789abcdef"
    (run_dir / "run.json").write_text(json.dumps(record))
    output = tmp_path / "artifacts"
    assert main(["train", *_common(tiny_training_run["data"]), "--base-model", str(tiny_base), "--output", str(output),
                 "--run-dir", str(run_dir), "--resume"]) == 2
    error = capsys.readouterr().err
    assert "fine-tuned on another split" in error
    assert f"validation_sha 0123456789abcdef recorded, {rebuilt} rebuilt" in error
    assert not output.exists()
    # the same data with another seed draws another split: refused as well, naming the training split too
    assert main(["train", *_common(tiny_training_run["data"])[:-1], "8", "--base-model", str(tiny_base),
                 "--output", str(output), "--run-dir", str(fine_tuned_without_tf), "--resume"]) == 2
    assert "train_sha" in capsys.readouterr().err
    assert not output.exists()


def test_split_hash_is_of_labels_and_texts_in_order() -> None:
    a = Examples(["good", "bad"], [1, 0])
    assert split_hash(a) == split_hash(Examples(["good", "bad"], [1, 0]))
    assert split_hash(a) != split_hash(Examples(["good", "bad"], [0, 0]))
    assert split_hash(a) != split_hash(Examples(["bad", "good"], [0, 1]))
    assert split_hash(a) != split_hash(Examples(["good", "bad "], [1, 0]))
    import hashlib

    assert split_hash(a) == hashlib.sha256(b"1\tgood\n0\tbad").hexdigest()[:16]


def test_a_device_run_record_in_the_model_directory_is_found(tmp_path: Path) -> None:
    """The layout a device run leaves (final_model/run/device_run.json, steps per epoch instead of steps)."""
    train, validation = Examples(["good", "bad"], [1, 0]), Examples(["fine"], [1])
    place = tmp_path / "final_model" / "run"
    place.mkdir(parents=True)
    (place / "device_run.json").write_text(json.dumps({
        "device": "NVIDIA H200", "steps_per_epoch": 5844, "epochs": 2.0, "fine_tune_wall_s": 229.5,
        "train_sha": split_hash(train), "validation_sha": split_hash(validation), "versions": {"torch": "2.11.0"}}))
    record, where = find_record(tmp_path)
    assert where == place / "device_run.json"
    assert check_split(record, where, train, validation) == {"train_sha": split_hash(train),
                                                             "validation_sha": split_hash(validation)}
    assert summary(record, where)["steps"] == 11688
    with pytest.raises(RunRecordError, match="train_sha"):
        check_split(record, where, Examples(["good"], [1]), validation)
    (tmp_path / "run.json").write_text("{not json")  # the run directory's own record comes first
    with pytest.raises(RunRecordError, match="not a JSON run record"):
        find_record(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"steps": 3}))
    with pytest.raises(RunRecordError, match="names its device"):
        find_record(tmp_path)
    assert find_record(tmp_path / "nothing here") is None


def _make_dry_run(target: str, *assignments: str) -> str:
    """What `make -n target` would run (stamp files touched so no install step is printed)."""
    run = subprocess.run(["make", "-n", "--no-print-directory", "-o", ".venv/.dev", "-o", ".venv-gpu/.installed",
                          target, *assignments], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _options(tokens: list[str]) -> dict[str, list[str]]:
    """``--flag value`` pairs (and bare flags) of a `python -m training train` command line."""
    options: dict[str, list[str]] = {}
    for i, token in enumerate(tokens):
        if token.startswith("--"):
            value = tokens[i + 1] if i + 1 < len(tokens) and not tokens[i + 1].startswith("--") else ""
            options.setdefault(token, []).append(value)
    return options


def test_make_train_gpu_runs_the_shared_gpu_models_command_and_needs_no_tensorflow() -> None:
    """make train-gpu is the command the shared full-pool model was fine-tuned with (its README), from a
    virtualenv whose requirements hold no TensorFlow; make finish-gpu finishes the same run with --resume."""
    import shlex

    pins = [x.split("==")[0] for x in (ROOT / "requirements" / "finetune.txt").read_text().lower().splitlines()
            if x.strip() and not x.startswith("#")]
    assert "torch" in pins and "transformers" in pins
    assert not [p for p in pins if any(name in p for name in ("tensorflow", "tf-keras", "litert", "keras", "-r "))]
    assert "-r finetune.txt" in (ROOT / "requirements" / "train.txt").read_text()
    line = next(x for x in _make_dry_run("train-gpu").replace("\\\n", " ").splitlines() if "-m training train" in x)
    ours = _options(shlex.split(line))
    assert line.startswith(".venv-gpu/bin/python")
    assert "--fine-tune-only" in ours and "--resume" not in ours
    readme = ROOT.parent / "shared" / "models" / "full-pool-h200-2ep" / "README.md"
    if readme.is_file():  # the model's own record of the command it ran
        block = readme.read_text().split("## The command it ran", 1)[1].split("```")[1]
        theirs = _options(shlex.split(block.replace("\\\n", " ")))
        assert {k: v for k, v in ours.items() if k != "--notes"} == theirs
    finish = _make_dry_run("finish-gpu")
    assert "--resume" in finish and "--fine-tune-only" not in finish and "--run-dir runs/gpu" in finish
