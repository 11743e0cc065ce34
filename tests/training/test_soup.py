"""`python -m training soup`: uniform and greedy soups, their refusals, and a soup finished like any run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.steps.soup import SoupError, average_states, check_compatible


def _common(data: Path, rate: str) -> list[str]:
    return ["--data", str(data), "--max-steps", "3", "--max-length", "64", "--warmup-steps", "0",
            "--learning-rate", rate, "--seed", "7"]


@pytest.fixture(scope="module")
def ingredients(tiny_training_run: dict[str, Path], tiny_base: Path,
                tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two fine-tuned models of the same base on the tiny run's split (same seed), with other learning rates."""
    from training.cli import main

    work = tmp_path_factory.mktemp("ingredients")
    made = []
    for name, rate in (("a", "1e-3"), ("b", "3e-4")):
        assert main(["train", *_common(tiny_training_run["data"], rate), "--base-model", str(tiny_base),
                     "--output", str(work / name / "artifacts"), "--run-dir", str(work / name), "--fine-tune-only"]) == 0
        made.append(work / name / "final_model")
    return made


def _state(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_average_states_is_the_element_wise_mean() -> None:
    import torch

    a = {"w": torch.tensor([1.0, 2.0], dtype=torch.float16), "ids": torch.tensor([0, 1])}
    b = {"w": torch.tensor([3.0, 5.0], dtype=torch.float16), "ids": torch.tensor([7, 7])}
    averaged = average_states([a, b])
    assert averaged["w"].dtype == torch.float16
    assert averaged["w"].tolist() == [2.0, 3.5]
    assert averaged["ids"].tolist() == [0, 1]  # integer buffers are not weights: the first's


def test_uniform_soup_is_the_mean_of_the_ingredients(ingredients: list[Path], tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from training.cli import main
    from training.steps.export import weights_version

    output = tmp_path / "soup" / "final_model"
    assert main(["soup", "--model", str(ingredients[0]), "--model", str(ingredients[1]), "--output", str(output)]) == 0
    a, b, soup = _state(ingredients[0]), _state(ingredients[1]), _state(output)
    assert set(soup) == set(a)
    for name in a:
        assert torch.allclose(soup[name], (a[name].double() + b[name].double()).div(2).to(a[name].dtype))
    assert not torch.equal(soup["classifier.weight"], a["classifier.weight"])
    record = json.loads((output / "soup.json").read_text())
    versions = [weights_version(AutoModelForSequenceClassification.from_pretrained(m)) for m in ingredients]
    assert [entry["version"] for entry in record["ingredients"]] == versions
    assert record["method"] == "uniform" and record["kept"] == versions
    assert record["version"] == weights_version(AutoModelForSequenceClassification.from_pretrained(output))
    assert "validation" not in record  # no split named: not scored
    assert all(entry["fine_tuned_on"].startswith("CPU (") for entry in record["ingredients"])  # their run records
    run = json.loads((output / "run.json").read_text())
    assert run["device"].startswith("soup of 2 fine-tuned model(s)")


def test_greedy_soup_keeps_an_ingredient_only_when_validation_does_not_drop(
        ingredients: list[Path], tiny_training_run: dict[str, Path], tmp_path: Path) -> None:
    from training.commands.soup import make_soup

    output = tmp_path / "greedy"
    record = make_soup(ingredients, output, greedy=True, split_from=tiny_training_run["output"])
    scores = [entry["validation"]["accuracy"] for entry in record["ingredients"]]
    best = max(range(2), key=lambda i: (scores[i], -record["ingredients"][i]["validation"]["nll"]))
    assert record["kept"][0] == record["ingredients"][best]["version"]
    (step,) = record["greedy_steps"]
    assert step["added"] == record["ingredients"][1 - best]["version"]
    assert step["kept"] == (step["validation"]["accuracy"] >= scores[best])
    assert len(record["kept"]) == (2 if step["kept"] else 1)
    assert record["validation"]["accuracy"] >= scores[best]  # greedy never ends below its best ingredient
    assert record["split_from"]["validation_examples"] == 24
    assert json.loads((output / "run.json").read_text())["validation_sha"] == record["split_from"]["validation_sha"]


def test_greedy_soup_refuses_an_ingredient_of_another_split(ingredients: list[Path], tiny_training_run: dict[str, Path],
                                                           tmp_path: Path) -> None:
    from training.commands.soup import make_soup

    other = tmp_path / "other" / "final_model"
    shutil.copytree(ingredients[1].parent, other.parent)
    record = json.loads((other / "run.json").read_text())
    record["validation_sha"] = "0123456789abcdef"
    (other / "run.json").write_text(json.dumps(record))
    with pytest.raises(SoupError, match=r"another split.*validation_sha 0123456789abcdef"):
        make_soup([ingredients[0], other], tmp_path / "out", greedy=True, split_from=tiny_training_run["output"])
    with pytest.raises(SoupError, match="--greedy scores the ingredients on a validation split"):
        make_soup(ingredients, tmp_path / "out", greedy=True, split_from=None)
    assert not (tmp_path / "out").exists()


def _edited_copy(source: Path, target: Path, name: str, edit) -> Path:  # type: ignore[no-untyped-def]
    shutil.copytree(source, target)
    path = target / name
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))
    return target


def test_models_that_cannot_be_averaged_are_refused(ingredients: list[Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import main

    deeper = _edited_copy(ingredients[1], tmp_path / "deeper", "config.json", lambda c: c.update(n_layers=3))
    with pytest.raises(SoupError, match=r"config\.json n_layers is 3, not 2"):
        check_compatible([ingredients[0], deeper])
    relabelled = _edited_copy(ingredients[1], tmp_path / "relabelled", "config.json",
                              lambda c: c.update(id2label={"0": "BAD", "1": "GOOD"}))
    with pytest.raises(SoupError, match="id2label"):
        check_compatible([ingredients[0], relabelled])

    def swap_two_tokens(tokenizer: dict) -> None:
        vocab = tokenizer["model"]["vocab"]
        first, second = list(vocab)[100:102]
        vocab[first], vocab[second] = vocab[second], vocab[first]

    other_vocab = _edited_copy(ingredients[1], tmp_path / "vocab", "tokenizer.json", swap_two_tokens)
    with pytest.raises(SoupError, match="its vocabulary differs"):
        check_compatible([ingredients[0], other_vocab])
    with pytest.raises(SoupError, match="at least two models"):
        check_compatible([ingredients[0]])
    with pytest.raises(SoupError, match="named twice"):
        check_compatible([ingredients[0], ingredients[0]])
    weightless = tmp_path / "weightless"
    shutil.copytree(ingredients[1], weightless)
    (weightless / "model.safetensors").unlink()
    with pytest.raises(SoupError, match=r"no model\.safetensors"):
        check_compatible([ingredients[0], weightless])
    # through the command line: exit 2 and the message, nothing written
    assert main(["soup", "--model", str(ingredients[0]), "--model", str(deeper), "--output", str(tmp_path / "o")]) == 2
    assert "n_layers" in capsys.readouterr().err
    assert main(["soup", "--model", str(ingredients[0]), "--model", str(ingredients[1]),
                 "--output", str(ingredients[1])]) == 2
    assert "is one of the ingredients" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_soup_is_finished_like_any_run(ingredients: list[Path], tiny_training_run: dict[str, Path], tiny_base: Path,
                                         tmp_path: Path) -> None:
    """The soup's directory as a run's final_model: train --resume finishes it, model.json and the card list the
    ingredients by weights version, and the exported model is the soup's weights."""
    from training.cli import main
    from training.commands.soup import make_soup

    run_dir = tmp_path / "soup_run"
    record = make_soup(ingredients, run_dir / "final_model")
    output = tmp_path / "artifacts"
    assert main(["train", *_common(tiny_training_run["data"], "1e-3"), "--base-model", str(tiny_base),
                 "--output", str(output), "--run-dir", str(run_dir), "--resume"]) == 0
    metadata = json.loads((output / "model.json").read_text())
    assert metadata["version"] == record["version"]
    assert [e["version"] for e in metadata["soup"]["ingredients"]] == record["kept"]
    assert metadata["training"]["device"].startswith("soup of 2 fine-tuned model(s)")
    card = (output / "MODEL_CARD.md").read_text()
    assert "### A model soup (uniform)" in card
    for version in record["kept"]:
        assert f"| {version} |" in card
