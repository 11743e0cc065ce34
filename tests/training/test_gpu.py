"""Fine-tuning on a CUDA GPU: fp16 switches on and the model learns. Skips where there is no GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (fp16 path)")


def test_fine_tune_on_gpu_uses_fp16_and_learns(tiny_base: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tests.conftest import write_original_csv
    from training.config import TrainConfig
    from training.data import build_splits, load_examples
    from training.metrics import classification_metrics
    from training.steps.finetune import fine_tune, predict_labels

    data = write_original_csv(tmp_path / "reviews.csv", n=400)
    config = TrainConfig(data=[data], base_model=str(tiny_base), output=tmp_path / "out", run_dir=tmp_path / "run",
                         epochs=6, min_epochs=2, warmup_steps=0, learning_rate=1e-3, max_length=64)
    splits = build_splits(load_examples([data]), seed=0)
    final_dir, trainer = fine_tune(config, splits.train, splits.validation)
    assert trainer.args.fp16 is True
    assert next(trainer.model.parameters()).device.type == "cuda"
    labels, predicted = predict_labels(trainer, splits.test, AutoTokenizer.from_pretrained(final_dir), 64)
    assert classification_metrics(labels, predicted)["accuracy"] >= 0.9
    assert (final_dir / "model.safetensors").exists()
