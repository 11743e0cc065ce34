"""Model soups: the average of the weights of fine-tuned models (Wortsman et al., 2022, "Model soups").

Models fine-tuned from the same base share a loss basin often enough that the element-wise mean of their
weights scores as well as the best of them or better, at the cost of one model. Only models with the same
architecture, vocabulary, labels and parameters can be averaged; ``check_compatible`` names the first
difference it finds. The average is taken in float64 and stored in the ingredients' dtype, as the
checkpoint average of a run (training.steps.finetune.average_checkpoints, which uses ``average_states``).

The greedy soup (the paper's recipe 2) needs a score on held-out data and lives in training.commands.soup.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

SOUP_RECORD = "soup.json"  # in a soup's directory: its ingredients and how it was made; model.json copies it
# config.json entries that must agree: everything that shapes the network or names its outputs
ARCHITECTURE_KEYS = ("model_type", "architectures", "vocab_size", "dim", "n_layers", "n_heads", "hidden_dim",
                     "max_position_embeddings", "activation", "sinusoidal_pos_embds", "hidden_size",
                     "num_hidden_layers", "num_attention_heads", "intermediate_size", "id2label", "label2id")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


class SoupError(ValueError):
    """Models that cannot be averaged; the message names the first difference."""


def average_states(states: Sequence[Mapping]) -> dict:  # type: ignore[type-arg]
    """Element-wise mean of state dicts (float64 accumulation, each tensor back in its own dtype).

    Integer tensors (buffers such as position ids) are taken from the first state: they are not weights.
    """
    first = states[0]
    return {name: (sum(s[name].double() for s in states) / len(states)).to(tensor.dtype)
            if tensor.is_floating_point() else tensor for name, tensor in first.items()}


def _config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.is_file():
        raise SoupError(f"{model_dir}: no config.json (a fine-tuned model directory holds config.json and "
                        "model.safetensors, e.g. runs/<name>/final_model or model_artifacts/pytorch)")
    return json.loads(path.read_text(encoding="utf-8"))


def _vocabulary(model_dir: Path) -> dict[str, int]:
    from tokenizers import Tokenizer

    if not (model_dir / "tokenizer.json").is_file():
        raise SoupError(f"{model_dir}: no tokenizer.json")
    return Tokenizer.from_file(str(model_dir / "tokenizer.json")).get_vocab(with_added_tokens=True)


def load_state(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    path = model_dir / "model.safetensors"
    if not path.is_file():
        raise SoupError(f"{model_dir}: no model.safetensors")
    return load_file(str(path))


def check_compatible(model_dirs: Sequence[Path]) -> list[dict]:
    """The ingredients' state dicts, after checking that they can be averaged.

    Raises:
        SoupError: fewer than two models, or one that differs from the first in its architecture or labels
            (config.json), its vocabulary (tokenizer.json) or its parameters' names and shapes.
    """
    if len(model_dirs) < 2:
        raise SoupError(f"a soup needs at least two models, got {len(model_dirs)}")
    if len({p.resolve() for p in model_dirs}) < len(model_dirs):
        raise SoupError("the same model is named twice: " + ", ".join(str(p) for p in model_dirs))
    reference, reference_config, reference_vocab = model_dirs[0], _config(model_dirs[0]), _vocabulary(model_dirs[0])
    states = [load_state(reference)]
    for other in model_dirs[1:]:
        config = _config(other)
        for key in ARCHITECTURE_KEYS:
            if config.get(key) != reference_config.get(key):
                raise SoupError(f"{other} cannot be averaged with {reference}: config.json {key} is "
                                f"{config.get(key)!r}, not {reference_config.get(key)!r}")
        vocab = _vocabulary(other)
        if vocab != reference_vocab:
            changed = sorted(set(vocab.items()) ^ set(reference_vocab.items()), key=lambda kv: kv[1])[:3]
            raise SoupError(f"{other} cannot be averaged with {reference}: its vocabulary differs "
                            f"({len(vocab)} against {len(reference_vocab)} tokens; e.g. {changed})")
        state = load_state(other)
        if set(state) != set(states[0]):
            extra, missing = sorted(set(state) - set(states[0])), sorted(set(states[0]) - set(state))
            raise SoupError(f"{other} cannot be averaged with {reference}: parameters differ "
                            f"(only in {other.name}: {extra[:3]}, only in {reference.name}: {missing[:3]})")
        for name, tensor in state.items():
            if tuple(tensor.shape) != tuple(states[0][name].shape) or tensor.dtype != states[0][name].dtype:
                raise SoupError(f"{other} cannot be averaged with {reference}: parameter {name} is "
                                f"{tuple(tensor.shape)} {tensor.dtype}, not {tuple(states[0][name].shape)} "
                                f"{states[0][name].dtype}")
        states.append(state)
    return states


def write_soup(model_dirs: Sequence[Path], states: Sequence[Mapping], output: Path, record: dict) -> Path:  # type: ignore[type-arg]
    """The uniform average of ``states`` as a fine-tuned model directory in ``output``, with ``record`` as soup.json.

    The configuration and tokenizer files are the first ingredient's (check_compatible showed them equal).
    """
    from safetensors.torch import save_file

    output.mkdir(parents=True, exist_ok=True)
    averaged = average_states(states)
    save_file({name: tensor.contiguous() for name, tensor in averaged.items()}, str(output / "model.safetensors"),
              metadata={"format": "pt"})
    for name in ("config.json", *TOKENIZER_FILES):
        if (model_dirs[0] / name).is_file():
            shutil.copy2(model_dirs[0] / name, output / name)
    (output / SOUP_RECORD).write_text(json.dumps(record, indent=1))
    logger.info("soup of %d models written to %s", len(states), output)
    return output
