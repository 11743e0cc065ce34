"""The defaults are the original model's configuration; bad values are refused; min-epochs rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from training.config import TrainConfig
from training.steps.finetune import MinEpochsEarlyStopping, training_arguments


def test_defaults_are_the_original_configuration(tmp_path: Path) -> None:
    config = TrainConfig(data=[tmp_path / "x.csv"], run_dir=tmp_path / "run")
    args = training_arguments(config)
    assert config.base_model == "distilbert-base-uncased"
    assert (config.epochs, config.min_epochs, config.patience) == (10, 5, 2)
    assert args.per_device_train_batch_size == 32
    assert args.num_train_epochs == 10
    assert args.warmup_steps == 500 and args.lr_scheduler_type.value == "linear"
    assert args.weight_decay == 0.01
    assert args.learning_rate == TrainingArguments(output_dir=str(tmp_path)).learning_rate
    assert args.eval_strategy.value == "epoch" and args.save_strategy.value == "epoch"
    assert args.load_best_model_at_end is True
    assert args.fp16 is False  # no CUDA here; fp16 follows torch.cuda.is_available()
    assert args.bf16 is False and config.title_examples is False  # both opt-in
    assert config.frozen_embeddings is None and config.average_checkpoints is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA the run uses fp16, not bf16")
def test_bf16_on_cpu_is_opt_in_and_accepted_by_the_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.config

    monkeypatch.setattr(training.config, "cpu_has_native_bf16", lambda: True)
    args = training_arguments(TrainConfig(data=[tmp_path / "x.csv"], run_dir=tmp_path / "run", bf16=True))
    assert args.bf16 is True and args.fp16 is False and args.use_cpu is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA the run uses fp16, not bf16")
def test_bf16_is_refused_on_a_cpu_without_native_bfloat16(tmp_path: Path) -> None:
    from training.config import cpu_has_native_bf16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse4_2 avx avx2 fma\n")
    assert cpu_has_native_bf16(cpuinfo) is False
    cpuinfo.write_text("flags : fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16(cpuinfo) is True
    assert cpu_has_native_bf16(tmp_path / "missing") is None
    if cpu_has_native_bf16() is False:  # this machine: the config says why instead of training 40x slower
        with pytest.raises(ValueError, match="no native bfloat16"):
            TrainConfig(data=[tmp_path / "x.csv"], bf16=True)


@pytest.mark.parametrize("bad", [
    {"epochs": 0}, {"min_epochs": 11}, {"max_length": 4}, {"batch_size": 0}, {"max_train_samples": 1},
    {"positive_label": "x", "negative_label": "x"}, {"validation_fraction": 0.7},
])
def test_bad_values_raise(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ValueError):
        TrainConfig(data=[tmp_path / "x.csv"], **bad)


def test_data_is_required() -> None:
    with pytest.raises(ValueError, match="--data"):
        TrainConfig()


def _run_evaluations(losses: list[float], min_epochs: int, patience: int = 2) -> float | None:
    """Feed one validation loss per epoch; return the epoch at which training is told to stop."""
    args = TrainingArguments(output_dir="/tmp/unused", eval_strategy="epoch", save_strategy="epoch",
                             load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=False)
    callback = MinEpochsEarlyStopping(patience=patience, min_epochs=min_epochs)
    state, control = TrainerState(), TrainerControl()
    for epoch, loss in enumerate(losses, start=1):
        state.epoch = float(epoch)
        callback.on_evaluate(args, state, control, {"eval_loss": loss})
        if state.best_metric is None or loss < state.best_metric:  # the Trainer updates it after on_evaluate
            state.best_metric = loss
        if control.should_training_stop:
            return state.epoch
    return None


def test_early_stopping_waits_for_min_epochs() -> None:
    worsening = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
    assert _run_evaluations(worsening, min_epochs=5) == 5.0
    assert _run_evaluations(worsening, min_epochs=0) == 3.0


def test_early_stopping_keeps_going_while_improving() -> None:
    assert _run_evaluations([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], min_epochs=5) is None


def test_the_last_epoch_ending_is_not_called_early_stopping(caplog: pytest.LogCaptureFixture) -> None:
    """A run that simply reaches its last step (--epochs 1) stops, and the log does not call it early stopping."""
    args = TrainingArguments(output_dir="/tmp/unused", eval_strategy="epoch", save_strategy="epoch",
                             load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=False)
    callback = MinEpochsEarlyStopping(patience=2, min_epochs=5)
    state, control = TrainerState(epoch=1.0), TrainerControl(should_training_stop=True)  # as the flow leaves it
    with caplog.at_level("INFO", logger="training.steps.finetune"):
        callback.on_evaluate(args, state, control, {"eval_loss": 0.5})
    assert control.should_training_stop  # min_epochs does not keep a finished run going
    assert "early stopping" not in caplog.text
    with caplog.at_level("INFO", logger="training.steps.finetune"):
        assert _run_evaluations([0.5, 0.6, 0.7], min_epochs=0) == 3.0  # real early stopping is still said
    assert "early stopping at epoch 3.00" in caplog.text


def test_model_name_follows_the_output_folder_unless_given(tmp_path: Path) -> None:
    def name(**values: object) -> str | None:
        return TrainConfig(data=[tmp_path / "x.csv"], **values).name  # type: ignore[arg-type]

    assert name(output=tmp_path / "model_artifacts") == "sentiment-distilbert"
    assert name(output=tmp_path / "movies") == "sentiment-movies"
    assert name(output=tmp_path / "artifacts", name="sentiment-distilbert") == "sentiment-distilbert"
