"""The split and the evaluation sets of a run, exactly as its configuration (or a model.json's record of it)
defines them."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from training.config import HELDOUT_ALL, HELDOUT_PREFIX, TrainConfig
from training.data.dataset import DataSplits, Examples, build_splits, drop_eval_leaks, expand_paths, load_examples
from training.data.readers import LabelSpec


def eval_set_name(path: Path) -> str:
    """A readable name for an evaluation file: its folder, plus the file stem when folders hold several."""
    parent = path.parent.name if path.is_file() else path.name
    siblings = [p for p in path.parent.iterdir()
                if p.suffix == path.suffix and p.stem.lower() not in ("readme", "license")] if path.is_file() else []
    return f"{parent}/{path.stem}" if len(siblings) > 1 else parent


def load_eval_sets(config: TrainConfig) -> dict[str, Examples]:
    sets: dict[str, Examples] = {}
    for path in expand_paths(config.eval_data):
        sets[eval_set_name(path)] = load_examples([path], config.eval_format)
    return sets


def load_splits(config: TrainConfig) -> tuple[DataSplits, dict[str, Examples]]:
    """Training / validation / test split and the evaluation sets, exactly as ``config`` defines them."""
    spec = LabelSpec(config.text_column, config.label_column, config.positive_label, config.negative_label)
    examples = load_examples(config.data, config.format, spec)
    eval_sets = load_eval_sets(config)
    eval_texts = [t for s in eval_sets.values() for t in s.texts]
    if eval_texts:
        examples = drop_eval_leaks(examples, eval_texts)
    splits = build_splits(
        examples, seed=config.seed, validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction, max_train_samples=config.max_train_samples,
        balance=config.balance, sample_seed=config.sample_seed, exclude_texts=eval_texts,
        train_sources=config.train_source, title_examples=config.title_examples,
        holdout_categories=config.holdout_category, category_cap=config.category_cap,
        after_sample=config.after_sample,
    )
    if splits.heldout:  # the out-of-category figure: each held-out category, and all of them together
        for category, held in splits.heldout.items():
            eval_sets[f"{HELDOUT_PREFIX}{category}"] = held
        if len(splits.heldout) > 1:
            eval_sets[HELDOUT_ALL] = _concat(list(splits.heldout.values()))
    return splits, eval_sets



def _concat(parts: list[Examples]) -> Examples:
    return Examples([t for p in parts for t in p.texts], [label for p in parts for label in p.labels],
                    categories=[c for p in parts for c in p.categories])


def recorded_config(output: Path) -> tuple[dict, TrainConfig]:
    """``output``'s model.json and the training configuration it records, with its data checked to be there."""
    metadata = json.loads((output / "model.json").read_text())
    recorded = metadata.get("training", {}).get("config")
    if not recorded:
        raise ValueError(f"{output / 'model.json'}: no training configuration recorded; cannot rebuild its split")
    config = TrainConfig(**{f.name: recorded[f.name] for f in fields(TrainConfig) if f.name in recorded})
    missing = [str(p) for p in [*config.data, *config.eval_data] if not p.exists()]
    if missing:
        raise ValueError(f"the model's training/evaluation data is not there: {', '.join(missing)} "
                         "(run from the directory it was trained in)")
    return metadata, config


def rebuild_splits(output: Path) -> tuple[dict, DataSplits, dict[str, Examples]]:
    """model.json, the split and the evaluation sets of the run that wrote ``output``, rebuilt from its record."""
    metadata, config = recorded_config(output)
    splits, eval_sets = load_splits(config)
    return metadata, splits, eval_sets


