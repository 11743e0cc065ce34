"""The run record: where and how a fine-tune ran, written by the machine that fine-tunes.

``train`` writes ``RUN_DIR/run.json`` (and a copy in ``RUN_DIR/final_model/run.json``, so that the model
directory carries it when it alone is copied) as soon as the fine-tune is done, before anything else. It
holds the device, the package versions, the step count, the fine-tune's seconds and the split hashes.

A run finished elsewhere (``train --resume`` on a run directory that already holds ``final_model/``) reads
the record instead of describing its own machine as the one that trained, and refuses a run directory
whose split hashes differ from the split it rebuilds: its model was fine-tuned on other data, and the
validation figures, the cut and the calibration would be measured on texts it trained on.

No TensorFlow here: this runs on GPU machines that have none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from training.data.dataset import Examples

logger = logging.getLogger(__name__)

RECORD = "run.json"
# Where a record may be, relative to the run directory, in the order they are looked for: train's own record,
# its copy inside the model directory, and the record a device run leaves in a shared model directory's run/.
RECORD_PLACES = (RECORD, f"final_model/{RECORD}", "final_model/run/device_run.json")
SPLIT_KEYS = ("train_sha", "validation_sha")


class RunRecordError(ValueError):
    """A run record that does not belong to the run being finished."""


def split_hash(examples: Examples) -> str:
    """First 16 hex digits of the sha256 of the split's ``label<TAB>text`` lines joined by newlines, in its order."""
    lines = "\n".join(f"{label}\t{text}" for text, label in zip(examples.texts, examples.labels, strict=True))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def this_device() -> str:
    """The device a fine-tune on this machine uses: the CUDA GPU's name, or the CPU and its threads."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def package_versions(*names: str) -> dict[str, str]:
    """Python's version and those of ``names`` that are installed (never imported here: no TensorFlow)."""
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


FINE_TUNE_PACKAGES = ("torch", "transformers", "accelerate", "tokenizers", "safetensors")


def build_record(train: Examples, validation: Examples, log_history: list[dict], fine_tune_s: float,
                 command: list[str] | None, world_size: int = 1) -> dict:
    """The record of a fine-tune that has just run in this process."""
    import torch

    versions = package_versions(*FINE_TUNE_PACKAGES)
    versions["torch"] = torch.__version__  # with its build tag (+cu130, +cpu), which metadata may not carry
    if torch.cuda.is_available() and torch.version.cuda:
        versions["cuda"] = torch.version.cuda
    return {
        "device": this_device(),
        "world_size": world_size,
        "host": {"machine": platform.machine(), "processor": platform.processor() or platform.machine()},
        "versions": versions,
        "steps": max((e.get("step", 0) for e in log_history), default=0),
        "epochs": round(float(max((e.get("epoch", 0) for e in log_history), default=0)), 2),
        "fine_tune_wall_s": round(fine_tune_s, 1),
        "train_runtime_s": next((round(e["train_runtime"], 1) for e in log_history if "train_runtime" in e), None),
        "train_sha": split_hash(train),
        "validation_sha": split_hash(validation),
        "train_examples": len(train),
        "validation_examples": len(validation),
        "argv": list(command or []),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_record(record: dict, run_dir: Path, final_dir: Path) -> None:
    text = json.dumps(record, indent=1)
    (run_dir / RECORD).write_text(text)
    if final_dir.is_dir():
        (final_dir / RECORD).write_text(text)
    logger.info("run record %s: fine-tuned on %s, %d steps in %.0f s", run_dir / RECORD, record["device"],
                record["steps"], record["fine_tune_wall_s"])


def find_record(run_dir: Path) -> tuple[dict, Path] | None:
    """The run record of ``run_dir`` (RECORD_PLACES, first found) and where it was, or None."""
    for place in RECORD_PLACES:
        path = run_dir / place
        if path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise RunRecordError(f"{path}: not a JSON run record ({exc})") from exc
            if not isinstance(record, dict) or not isinstance(record.get("device"), str):
                raise RunRecordError(f"{path}: a run record names its device (\"device\": \"...\")")
            return record, path
    return None


def check_split(record: dict, where: Path, train: Examples, validation: Examples) -> dict[str, str]:
    """The rebuilt split's hashes, after checking them against ``record``'s; a difference is refused.

    Raises:
        RunRecordError: a hash the record has differs from the rebuilt one (the message names both). A hash
            the record lacks (a soup records only the validation split) is logged as not checked.
    """
    rebuilt = {"train_sha": split_hash(train), "validation_sha": split_hash(validation)}
    missing = [key for key in SPLIT_KEYS if not record.get(key)]
    if missing:  # a soup records only the validation split its ingredients share
        logger.warning("%s: the run record has no %s: that part of the split cannot be checked", where,
                       " or ".join(missing))
    differing = [key for key in SPLIT_KEYS if record.get(key) and record[key] != rebuilt[key]]
    if differing:
        detail = "; ".join(f"{key} {record[key]} recorded, {rebuilt[key]} rebuilt" for key in differing)
        raise RunRecordError(f"{where}: the model was fine-tuned on another split than this command rebuilds ({detail}). "
                             "Finish it with the same data, options and seed as the fine-tune (its argv in the record)")
    logger.info("run record %s: split hashes match (%s)", where, ", ".join(f"{k} {rebuilt[k]}" for k in SPLIT_KEYS
                                                                       if record.get(k)))
    return rebuilt


def summary(record: dict, where: Path | None) -> dict:
    """model.json's ``training.fine_tune``: the record's facts, with the step count filled in from the epoch size."""
    steps = record.get("steps")
    if not steps and record.get("steps_per_epoch") and record.get("epochs"):
        steps = round(record["steps_per_epoch"] * float(record["epochs"]))
    entry = {"device": record["device"], "versions": record.get("versions", {}), "steps": steps,
             "fine_tune_wall_s": record.get("fine_tune_wall_s"), "train_sha": record.get("train_sha"),
             "validation_sha": record.get("validation_sha")}
    if where is not None:
        entry["record"] = str(where)
    return {k: v for k, v in entry.items() if v is not None}
