"""`soup`: the uniform or greedy soup of fine-tuned models, as a fine-tuned model directory to finish like any run.

    python -m training soup --model DIR --model DIR ... --output runs/soup/final_model [--greedy]

Uniform: the mean of every ingredient's weights. Greedy (Wortsman et al., 2022, recipe 2): the ingredients
sorted by their own validation accuracy, best first; each is added to the soup only if the soup's
validation accuracy does not drop. Validation accuracy is the pipeline's own: the fine-tuned PyTorch model
on the validation split, long texts cut at the head chosen for that model (training.steps.cut), ties to the
lower NLL. The split is rebuilt from a model directory's model.json (``--split-from``, the bundled model by
default) and checked against every ingredient's run record, so no ingredient is scored on texts it trained on.

The output holds config.json, model.safetensors, the tokenizer, soup.json (ingredients by weights version,
their validation figures, the greedy steps) and run.json (the run record a resumed ``train`` reads).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from training.data.splits import load_splits, recorded_config
from training.steps.export import weights_version
from training.steps.run_record import RECORD, package_versions, split_hash, this_device
from training.steps.soup import SoupError, average_states, check_compatible, write_soup

logger = logging.getLogger(__name__)


class ValidationScorer:
    """The pipeline's validation figure of a set of weights: accuracy at the head chosen for them, and its NLL."""

    def __init__(self, reference: Path, validation, max_length: int) -> None:  # type: ignore[no-untyped-def]
        import tempfile

        from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

        self.validation, self.max_length = validation, max_length
        self.tokenizer = AutoTokenizer.from_pretrained(reference)
        self.model = AutoModelForSequenceClassification.from_pretrained(reference)
        self._work = tempfile.TemporaryDirectory(prefix="soup-")
        import torch

        args = TrainingArguments(output_dir=self._work.name, per_device_eval_batch_size=64, report_to=[],
                                 fp16=torch.cuda.is_available(), disable_tqdm=True)
        self.trainer = Trainer(model=self.model, args=args, processing_class=self.tokenizer)

    def __call__(self, state: dict) -> dict:  # type: ignore[type-arg]
        from training.steps.finetune import choose_head

        self.model.load_state_dict(state, strict=False)
        self.trainer.model = self.model.to(self.trainer.args.device)
        entry = choose_head(self.trainer, self.validation, self.tokenizer, self.max_length)
        best = entry["by_head"][str(entry["head"])]
        room = self.max_length - 2
        return {"accuracy": best["accuracy"], "nll": best["nll"], "head": entry["head"],
                "head_only_accuracy": entry["by_head"][str(room)]["accuracy"]}


def _ingredient_record(model_dir: Path) -> tuple[dict, Path] | None:
    """An ingredient's own run record: in its directory (run.json, or run/device_run.json as a device run leaves
    it), or the run.json of the run directory above it (runs/<name>/final_model)."""
    for path in (model_dir / RECORD, model_dir / "run" / "device_run.json", model_dir.parent / RECORD):
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8")), path
    return None


def make_soup(models: list[Path], output: Path, greedy: bool = False, split_from: Path | None = None) -> dict:
    """The ``soup`` command. Returns soup.json's content.

    Raises:
        SoupError: models that cannot be averaged, an ingredient fine-tuned on another split, or --greedy
            without a split to score on.
    """
    from transformers import AutoModelForSequenceClassification

    started = time.perf_counter()
    if greedy and split_from is None:
        raise SoupError("--greedy scores the ingredients on a validation split: name a model directory whose "
                        "model.json records it (--split-from)")
    if output.resolve() in {m.resolve() for m in models}:
        raise SoupError(f"--output {output} is one of the ingredients")
    states = check_compatible(models)
    ingredients = []
    for model_dir in models:
        version = weights_version(AutoModelForSequenceClassification.from_pretrained(model_dir))
        entry = {"path": str(model_dir), "version": version}
        found = _ingredient_record(model_dir)
        if found:
            record, where = found
            entry.update({"fine_tuned_on": record.get("device"), "record": str(where),
                          **{k: record[k] for k in ("train_sha", "validation_sha") if record.get(k)}})
        ingredients.append(entry)
    record: dict = {"method": "greedy" if greedy else "uniform", "ingredients": ingredients,
                    "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    scorer = None
    hashes: dict[str, str] = {}
    if split_from is not None:
        _, config = recorded_config(split_from)
        splits, _ = load_splits(config)
        # The ingredients may have trained on different samples; what they must share is the held-out part.
        hashes = {"validation_sha": split_hash(splits.validation)}
        for entry in ingredients:
            differing = [k for k in hashes if entry.get(k) and entry[k] != hashes[k]]
            if differing:
                raise SoupError(f"{entry['path']} was fine-tuned on another split than {split_from}'s "
                                f"({'; '.join(f'{k} {entry[k]} against {hashes[k]}' for k in differing)}): "
                                "its validation accuracy would be measured on texts it trained on")
        record["split_from"] = {"model": str(split_from), **hashes, "validation_examples": len(splits.validation)}
        scorer = ValidationScorer(models[0], splits.validation, config.max_length)

    kept = list(range(len(models)))
    if scorer is not None:
        for i, entry in enumerate(ingredients):
            entry["validation"] = scorer(states[i])
            logger.info("ingredient %s (%s): validation accuracy %.4f at head %d", entry["path"], entry["version"],
                        entry["validation"]["accuracy"], entry["validation"]["head"])
    if greedy:
        order = sorted(range(len(models)), key=lambda i: (-ingredients[i]["validation"]["accuracy"],
                                                          ingredients[i]["validation"]["nll"]))
        kept, current = [order[0]], ingredients[order[0]]["validation"]
        steps = []
        for i in order[1:]:
            trial = scorer(average_states([states[j] for j in [*kept, i]]))  # type: ignore[misc]
            added = trial["accuracy"] >= current["accuracy"]
            steps.append({"added": ingredients[i]["version"], "validation": trial, "kept": added})
            logger.info("greedy soup: + %s -> validation accuracy %.4f (%s %.4f): %s", ingredients[i]["version"],
                        trial["accuracy"], "soup so far", current["accuracy"], "kept" if added else "left out")
            if added:
                kept.append(i)
                current = trial
        record["greedy_steps"] = steps
        record["validation"] = current
    elif scorer is not None:
        record["validation"] = scorer(average_states(states))
    record["kept"] = [ingredients[i]["version"] for i in kept]
    write_soup([models[i] for i in kept], [states[i] for i in kept], output, record)
    if len(kept) < len(models):
        logger.info("greedy soup kept %d of %d ingredients: %s", len(kept), len(models), ", ".join(record["kept"]))
    # The run record a resumed `train` reads (training.steps.run_record): where the soup was made, of what
    run = {"device": f"soup of {len(kept)} fine-tuned model(s), averaged on {this_device()}",
           "versions": package_versions("torch", "transformers", "safetensors"),
           "soup_of": [{k: ingredients[i].get(k) for k in ("version", "fine_tuned_on", "record")} for i in kept],
           "fine_tune_wall_s": round(time.perf_counter() - started, 1), **hashes,
           "created": record["created"]}
    (output / RECORD).write_text(json.dumps(run, indent=1))
    record["version"] = weights_version(AutoModelForSequenceClassification.from_pretrained(output))
    (output / "soup.json").write_text(json.dumps(record, indent=1))
    logger.info("soup %s (%s of %s) in %s", record["version"], record["method"], ", ".join(record["kept"]), output)
    return record
