"""Fine-tuning with the Hugging Face Trainer (PyTorch)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerControl,
    TrainerState,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from training.config import LABELS, TrainConfig
from training.data.dataset import Examples
from training.metrics import classification_metrics
from training.steps.soup import average_states

logger = logging.getLogger(__name__)


class MinEpochsEarlyStopping(EarlyStoppingCallback):
    """Early stopping with patience, but never before ``min_epochs`` epochs have run."""

    def __init__(self, patience: int, min_epochs: int) -> None:
        super().__init__(early_stopping_patience=patience)
        self.min_epochs = min_epochs

    def on_evaluate(self, args, state: TrainerState, control: TrainerControl, metrics, **kwargs):  # type: ignore[no-untyped-def]
        # Already set before this evaluation: the run reached its last step (the Trainer's own flow), which
        # is neither early stopping nor for this callback to undo.
        finished = control.should_training_stop
        super().on_evaluate(args, state, control, metrics, **kwargs)
        if finished or not control.should_training_stop:
            return
        if (state.epoch or 0) < self.min_epochs - 1e-6:
            control.should_training_stop = False
        else:
            logger.info("early stopping at epoch %.2f (no improvement for %d evaluations)",
                        state.epoch or 0, self.early_stopping_patience)


class EncodedDataset(torch.utils.data.Dataset):
    """Tokenized examples for the Trainer (dynamic padding happens in the collator)."""

    def __init__(self, examples: Examples, tokenizer: PreTrainedTokenizerBase, max_length: int,
                 head: int | None = None) -> None:
        """``head``: a longer text keeps its first ``head`` tokens and its last max_length - 2 - head
        (``app.model.cut_ids``, as served); None keeps the first max_length - 2, as the tokenizer truncates."""
        if head is None:
            self.encodings = tokenizer(examples.texts, truncation=True, max_length=max_length)
        else:
            from app.model import cut_ids

            ids = [cut_ids(x, max_length, head) for x in tokenizer(examples.texts, verbose=False)["input_ids"]]
            self.encodings = {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}
        self.labels = examples.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, object]:
        return {"input_ids": self.encodings["input_ids"][i],
                "attention_mask": self.encodings["attention_mask"][i],
                "labels": self.labels[i]}


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    # label_ids come back in the order the Trainer evaluated (length-grouped): compare with them.
    predicted = np.argmax(prediction.predictions, axis=-1)
    metrics = classification_metrics(prediction.label_ids, predicted)
    return {k: v for k, v in metrics.items() if k in ("accuracy", "precision", "recall", "f1")}


def load_base(config: TrainConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model with a fresh two-label classification head, and its tokenizer.

    The head's random initialisation is seeded with ``config.seed`` (the Trainer seeds only after the
    model exists), so the same command gives the same weights.
    """
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(config.base_model, revision=config.base_revision, use_fast=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        config.base_model,
        revision=config.base_revision,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    if config.frozen_embeddings is not None:
        freeze_word_embeddings(model, tokenizer, config.frozen_embeddings)
    return model, tokenizer


def freeze_word_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, source: Path) -> None:
    """Copy the word-embedding table of the model in ``source`` into ``model`` and keep it fixed.

    The table must come from a model with the same vocabulary (checked token by token). Frozen
    parameters get no gradient, no AdamW update and no weight decay, so they stay bit-identical.
    """
    from transformers import AutoModel

    source_tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
    if source_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"--frozen-embeddings {source}: its vocabulary differs from the base model's")
    source_table = AutoModel.from_pretrained(source).get_input_embeddings().weight
    table = model.get_input_embeddings().weight
    if source_table.shape != table.shape:
        raise ValueError(f"--frozen-embeddings {source}: table {tuple(source_table.shape)} does not fit "
                         f"the base model's {tuple(table.shape)}")
    with torch.no_grad():
        table.copy_(source_table)
    table.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("word embeddings %s taken from %s and frozen; %.1f M parameters still train",
                tuple(table.shape), source, trainable / 1e6)


def launched_distributed() -> bool:
    """Whether a launcher such as ``torchrun --nproc_per_node N`` (N > 1) started this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def training_arguments(config: TrainConfig) -> TrainingArguments:
    """The Trainer arguments: the original model's configuration unless the config says otherwise.

    Under torchrun on CPU the Trainer needs ``use_cpu`` and the gloo backend: without them it
    initialises the process group but trains each process on its own (parallel_mode is not
    DISTRIBUTED), and every process exports into the same directory.
    """
    cpu_distributed = launched_distributed() and not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(config.run_dir / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size * 2,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="linear",
        weight_decay=config.weight_decay,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=3,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        greater_is_better=False,
        fp16=torch.cuda.is_available(),
        bf16=config.bf16 and not torch.cuda.is_available(),
        # the Trainer accepts CPU bf16 only with use_cpu, and runs CPU processes as one DDP job only with it
        use_cpu=(config.bf16 or cpu_distributed) and not torch.cuda.is_available(),
        ddp_backend="gloo" if cpu_distributed else None,
        group_by_length=config.group_by_length,
        logging_strategy="steps",
        logging_steps=25,
        logging_first_step=True,
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def fine_tune(config: TrainConfig, train: Examples, validation: Examples) -> tuple[Path, Trainer]:
    """Fine-tune and save the best model to ``run_dir/final_model``; resumes from checkpoints."""
    final_dir = config.run_dir / "final_model"
    model, tokenizer = load_base(config)
    trainer = Trainer(
        model=model,
        args=training_arguments(config),
        train_dataset=EncodedDataset(train, tokenizer, config.max_length, config.train_head),
        eval_dataset=EncodedDataset(validation, tokenizer, config.max_length, config.train_head),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=[MinEpochsEarlyStopping(config.patience, config.min_epochs)],
    )
    if config.resume and (final_dir / "config.json").exists():
        logger.info("resume: %s already holds the fine-tuned model; skipping training", final_dir)
        return final_dir, trainer
    checkpoint = get_last_checkpoint(str(config.run_dir / "checkpoints")) if config.resume else None
    if config.resume and checkpoint is None:
        logger.info("resume: no checkpoint under %s, starting from the base model", config.run_dir)
    trainer.train(resume_from_checkpoint=checkpoint)
    if trainer.is_world_process_zero():
        trainer.save_model(str(final_dir))
        tokenizer.save_pretrained(str(final_dir))
        (config.run_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    trainer.accelerator.wait_for_everyone()  # the other processes read final_dir next (no-op in one process)
    return final_dir, trainer


def predict_labels(trainer: Trainer, examples: Examples, tokenizer: PreTrainedTokenizerBase,
                   max_length: int, head: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions in the Trainer's own order (never the dataset's label list)."""
    labels, logits = predict_logits(trainer, examples, tokenizer, max_length, head)
    return labels, np.argmax(logits, axis=-1)


def predict_logits(trainer: Trainer, examples: Examples, tokenizer: PreTrainedTokenizerBase,
                   max_length: int, head: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and logits in the Trainer's own order."""
    output = trainer.predict(EncodedDataset(examples, tokenizer, max_length, head))
    return np.asarray(output.label_ids), np.asarray(output.predictions)


def choose_head(trainer: Trainer, validation: Examples, tokenizer: PreTrainedTokenizerBase,
                max_length: int) -> dict:
    """training.steps.cut's choice of head, made with the fine-tuned PyTorch model (every process takes part)."""
    from training.steps.cut import candidates, truncation_entry

    lengths = [len(x) for x in tokenizer(validation.texts, verbose=False)["input_ids"]]
    long = [i for i, n in enumerate(lengths) if n > max_length]
    short = [i for i, n in enumerate(lengths) if n <= max_length]

    def subset(index: list[int]) -> Examples:
        return Examples([validation.texts[i] for i in index], [validation.labels[i] for i in index])

    fixed = predict_logits(trainer, subset(short), tokenizer, max_length) if short else None
    scored = {}
    for head in candidates(max_length):
        parts = [fixed] if fixed is not None else []
        if long:
            parts.append(predict_logits(trainer, subset(long), tokenizer, max_length, head))
        scored[head] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return truncation_entry(scored, max_length, "pytorch", len(validation), len(long))


def kept_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints a run kept (the latest three, always including the best: save_total_limit), oldest first."""
    found = [p for p in (run_dir / "checkpoints").glob("checkpoint-*") if (p / "model.safetensors").is_file()]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def average_checkpoints(config: TrainConfig, trainer: Trainer, log_history: list[dict],
                        best_dir: Path) -> tuple[Path, dict[str, object]]:
    """Uniform average of the kept checkpoints, used only if its validation loss is no higher than the best's.

    The average is taken in float64 and written to ``run_dir/averaged_model``; its validation loss
    is measured through ``trainer`` (the same batches and autocast as the per-epoch evaluations).
    Returns the directory to export (the average or ``best_dir``) and the record of the decision.
    """
    from safetensors.torch import load_file

    checkpoints = kept_checkpoints(config.run_dir)
    losses = [e["eval_loss"] for e in log_history if "eval_loss" in e]
    record: dict[str, object] = {"checkpoints": [p.name for p in checkpoints], "used": False}
    if len(checkpoints) < 2 or not losses:
        record["reason"] = f"{len(checkpoints)} checkpoint(s) kept: nothing to average"
        logger.info("checkpoint averaging: %s", record["reason"])
        return best_dir, record

    states = [load_file(str(p / "model.safetensors")) for p in checkpoints]
    averaged = average_states(states)
    model = AutoModelForSequenceClassification.from_pretrained(best_dir)
    missing, unexpected = model.load_state_dict(averaged, strict=False)
    if unexpected or any(not name.endswith("position_ids") for name in missing):
        raise RuntimeError(f"checkpoint averaging: state does not fit the model (missing {missing}, "
                           f"unexpected {unexpected})")
    trainer.model = model.to(trainer.args.device)
    measured = trainer.evaluate()
    loss, best = float(measured["eval_loss"]), float(min(losses))
    record.update({"validation_loss": round(loss, 6), "best_checkpoint_validation_loss": round(best, 6),
                   "used": loss <= best})
    if "eval_accuracy" in measured:
        record["validation_accuracy"] = round(float(measured["eval_accuracy"]), 6)
    logger.info("checkpoint averaging of %s: validation loss %.4f vs best checkpoint %.4f -> %s",
                ", ".join(record["checkpoints"]), loss, best,  # type: ignore[arg-type]
                "using the average" if record["used"] else "keeping the best checkpoint")
    if not record["used"]:
        return best_dir, record
    averaged_dir = config.run_dir / "averaged_model"
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()  # torchrun: the Trainer's group
    if not distributed or torch.distributed.get_rank() == 0:  # every process measured the average (a collective)
        model.save_pretrained(str(averaged_dir))
        AutoTokenizer.from_pretrained(best_dir).save_pretrained(str(averaged_dir))
    if distributed:
        torch.distributed.barrier()  # the others load averaged_dir next
    return averaged_dir, record
