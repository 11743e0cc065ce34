"""A model directory's reports: model.json, the plots (confusion matrices, learning curves, reliability,
categories) and the human-readable MODEL_CARD.md."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from training.config import HELDOUT_ALL, HELDOUT_PREFIX, LABELS


def plot_confusion_matrices(metrics: dict[str, dict], labels: list[str], path: Path, backend: str = "tflite") -> None:
    """One confusion matrix per evaluation set, for ``backend``."""
    names = [n for n in metrics if backend in metrics[n]]
    columns = min(4, max(1, len(names)))
    rows = (len(names) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names, strict=False):
        matrix = metrics[name][backend]["confusion_matrix"]
        ax.imshow(matrix, cmap="Blues")
        for i in range(2):
            for j in range(2):
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=10)
        ax.set_xticks([0, 1], [label[:3] for label in labels])
        ax.set_yticks([0, 1], [label[:3] for label in labels])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}\nacc {metrics[name][backend]['accuracy']:.3f}", fontsize=9)
    fig.suptitle(f"Confusion matrices ({backend})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_learning_curves(log_history: list[dict], path: Path, average: dict | None = None) -> None:
    """Training loss per logging step; validation loss and accuracy per epoch; the checkpoint average's, if measured."""
    train = [(e["epoch"], e["loss"]) for e in log_history if "loss" in e]
    evals = [(e["epoch"], e["eval_loss"], e.get("eval_accuracy")) for e in log_history if "eval_loss" in e]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    if train:
        left.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        left.plot([e[0] for e in evals], [e[1] for e in evals], "o-", label="validation loss")
        right.plot([e[0] for e in evals], [e[2] for e in evals], "o-", color="tab:green")
    if evals and average and "validation_loss" in average:
        label = f"checkpoint average ({'exported' if average['used'] else 'not used'})"
        left.plot([evals[-1][0]], [average["validation_loss"]], "*", markersize=12, color="tab:red", label=label)
        if average.get("validation_accuracy") is not None:
            right.plot([evals[-1][0]], [average["validation_accuracy"]], "*", markersize=12, color="tab:red",
                       label=label)
            right.legend()
    left.set_yscale("log")
    left.set_xlabel("epoch")
    left.legend()
    left.set_title("loss")
    right.set_xlabel("epoch")
    right.set_title("validation accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def category_rows(metrics: dict[str, dict], backend: str = "tflite") -> tuple[list[tuple[str, int, float]],
                                                                              list[tuple[str, int, float]]]:
    """(category, n, accuracy) on the test split, and for each held-out category, for ``backend``."""
    test = metrics.get("test", {}).get(backend, {}).get("by_category", {})
    seen = [(c, v["n"], v["accuracy"]) for c, v in test.items()]
    held = [(name[len(HELDOUT_PREFIX):], by[backend]["n"], by[backend]["accuracy"]) for name, by in metrics.items()
            if name.startswith(HELDOUT_PREFIX) and name != HELDOUT_ALL and backend in by]
    return seen, held


def out_of_category_drop(metrics: dict[str, dict], backend: str = "tflite") -> dict[str, float] | None:
    """Mean accuracy over trained categories' test texts vs over held-out categories (each category weighs the same)."""
    seen, held = category_rows(metrics, backend)
    if not seen or not held:
        return None
    trained = sum(a for _, _, a in seen) / len(seen)
    unseen = sum(a for _, _, a in held) / len(held)
    return {"trained_categories": round(trained, 4), "heldout_categories": round(unseen, 4),
            "drop": round(trained - unseen, 4)}


def plot_categories(metrics: dict[str, dict], path: Path, backend: str = "tflite") -> bool:
    """Accuracy per product category: test split (trained categories) and held-out categories. False if none."""
    seen, held = category_rows(metrics, backend)
    rows = sorted(seen, key=lambda r: r[2]) + sorted(held, key=lambda r: r[2])
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 0.24 * len(rows) + 1.2))
    colors = ["tab:blue"] * len(seen) + ["tab:orange"] * len(held)
    ax.barh(range(len(rows)), [r[2] for r in rows], color=colors)
    ax.set_yticks(range(len(rows)), [f"{r[0]} (n={r[1]})" for r in rows], fontsize=7)
    low = min(r[2] for r in rows)
    ax.set_xlim(max(0.0, low - 0.05), 1.0)
    if "test" in metrics and backend in metrics["test"]:
        ax.axvline(metrics["test"][backend]["accuracy"], color="black", linewidth=0.8, linestyle="--",
                   label=f"whole test split {metrics['test'][backend]['accuracy']:.3f}")
    ax.bar([0], [0], color="tab:blue", label="test split, trained categories")
    if held:
        ax.bar([0], [0], color="tab:orange", label="held-out categories (never trained on)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel(f"accuracy ({backend})")
    ax.set_title("Accuracy per product category")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _drop_words(drop: float) -> str:
    """'accuracy is **2.4 points lower**' (or higher): a signed number alone reads as a gain when it is a drop."""
    return f"accuracy is **{abs(drop) * 100:.1f} points {'lower' if drop >= 0 else 'higher'}**"


def _sources_table(data: dict) -> str:
    sources = data.get("sources")
    if not sources:
        return ""
    lines = ["| data set | rows read | duplicates dropped | leaks dropped | kept |", "|---|---|---|---|---|"]
    for name, entry in sources.items():
        lines.append(f"| {name} | {entry['rows']} | {entry['duplicates_dropped']} | {entry.get('leaks_dropped', 0)} | "
                     f"{entry['kept']} |")
    leaks = data.get("leaks")
    note = (f"\n\nLeak check ({leaks['method']}): {leaks['dropped']} texts dropped "
            f"({leaks['contains_eval_text']} containing an evaluation text, {leaks['inside_eval_text']} inside one)."
            if leaks else "")
    return "\n".join(lines) + note + "\n"


def _categories_section(metadata: dict) -> str:
    metrics = metadata["metrics"]
    seen, held = category_rows(metrics)
    if not seen and not held:
        return ""
    lines = ["## Accuracy per product category", ""]
    holdout = metadata["training"]["config"].get("holdout_category") or []
    if holdout:
        lines.append(f"Held out of training and validation before training: {', '.join(holdout)}.")
        drop = out_of_category_drop(metrics)
        if drop:
            lines.append(f"Mean accuracy (TFLite, each category weighted equally): {drop['trained_categories']:.4f} on "
                         f"the test split's trained categories, {drop['heldout_categories']:.4f} on the held-out "
                         f"categories: {_drop_words(drop['drop'])} on categories the model was not trained on.")
        lines.append("")
    lines += ["| category | split | n | accuracy (TFLite) |", "|---|---|---|---|"]
    lines += [f"| {c} | test | {n} | {a:.4f} |" for c, n, a in seen]
    lines += [f"| {c} | held out | {n} | {a:.4f} |" for c, n, a in held]
    lines += ["", "![accuracy per category](categories.png)", ""]
    return "\n".join(lines) + "\n"


def _versions(versions: dict) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def _where_section(training: dict) -> str:
    """Where each half of the run ran: the fine-tune (its run record) and the finish (this pipeline)."""
    fine_tune, finished = training.get("fine_tune"), training.get("finished_on")
    if not finished:
        return ""
    lines = ["", "### Where it was trained", ""]
    if fine_tune:
        steps = f"{fine_tune['steps']:,} steps" if fine_tune.get("steps") else "steps not recorded"
        seconds = f" in {fine_tune['fine_tune_wall_s']:.0f} s" if fine_tune.get("fine_tune_wall_s") else ""
        lines.append(f"- Fine-tune: {fine_tune['device']} ({_versions(fine_tune.get('versions', {}))}), "
                     f"{steps}{seconds}; run record `{fine_tune.get('record', 'run.json')}`.")
        hashes = [f"{k.removesuffix('_sha')} `{fine_tune[k]}`" for k in ("train_sha", "validation_sha") if fine_tune.get(k)]
        if hashes:
            lines.append(f"- Split hashes (sha256 of `label<TAB>text` lines), checked when the run was finished: "
                         f"{', '.join(hashes)}.")
    else:
        lines.append(f"- Fine-tune: {training.get('device')}.")
    lines.append(f"- Finished (cut, PyTorch evaluation, export, calibration, both backends) on {finished['device']} "
                 f"({_versions(finished.get('versions', {}))}).")
    return "\n".join(lines) + "\n"


def _soup_section(metadata: dict) -> str:
    """A soup's ingredients by weights version, with their validation figures and the greedy steps."""
    soup = metadata.get("soup")
    if not soup:
        return ""
    lines = ["", f"### A model soup ({soup['method']})", "",
             "The weights are the uniform average of fine-tuned models (Wortsman et al., 2022, \"Model soups\"); "
             "`python -m training soup` made them. Ingredients (validation accuracy: PyTorch, each at its own "
             "chosen cut):", "", "| ingredient | weights version | fine-tuned on | validation accuracy | in the soup |",
             "|---|---|---|---|---|"]
    for entry in soup["ingredients"]:
        accuracy = entry.get("validation", {}).get("accuracy")
        lines.append(f"| `{entry['path']}` | {entry['version']} | {entry.get('fine_tuned_on') or 'not recorded'} | "
                     f"{'' if accuracy is None else f'{accuracy:.4f}'} | {'yes' if entry['version'] in soup['kept'] else 'no'} |")
    for step in soup.get("greedy_steps", []):
        lines.append(f"\nGreedy step: adding {step['added']} gave validation accuracy {step['validation']['accuracy']:.4f}: "
                     f"{'kept' if step['kept'] else 'left out'}.")
    if soup.get("validation"):
        lines.append(f"\nThe soup's own validation accuracy: {soup['validation']['accuracy']:.4f}.")
    return "\n".join(lines) + "\n"


def _metrics_table(metrics: dict[str, dict]) -> str:
    lines = ["| set | n | backend | accuracy | precision | recall | F1 |", "|---|---|---|---|---|---|---|"]
    for name, by_backend in metrics.items():
        for backend, m in by_backend.items():
            if backend == "agreement":
                continue
            lines.append(f"| {name} | {m['n']} | {backend} | {m['accuracy']:.4f} | {m['precision']:.4f} | "
                         f"{m['recall']:.4f} | {m['f1']:.4f} |")
    return "\n".join(lines)


def _agreement_table(metrics: dict[str, dict]) -> str:
    lines = ["| set | int8 vs fp32 label agreement | accuracy difference (tflite - savedmodel) |", "|---|---|---|"]
    for name, by_backend in metrics.items():
        if "agreement" in by_backend:
            a = by_backend["agreement"]
            lines.append(f"| {name} | {a['labels']:.4f} | {a['accuracy_difference']:+.4f} |")
    return "\n".join(lines)


def _titles_note(data: dict) -> str:
    if not data.get("train_title_examples"):
        return ""
    return (f", of which {data['train_reviews']} reviews and {data['train_title_examples']} of their titles "
            "as texts of their own")


def _base_note(metadata: dict) -> str:
    """A base model that is an earlier run's output has to be rebuilt first: say so under the command."""
    base = str(metadata.get("base_model", ""))
    if Path(base).name != "final_model":
        return ""
    return (f"\nThe base model `{base}` is the output of an earlier training run, not a published model: "
            "rebuild it first (for the bundled model, `make train-bundled` runs both stages).\n")


def _reexport_note(metadata: dict) -> str:
    when = metadata.get("export", {}).get("reexported")
    return (f"\nsaved_model/ and model.tflite were rebuilt from the same weights on {when} with `python -m training export` "
            "(a newer exporter); their metrics below are re-measured.\n" if when else "")


def _averaging_note(training: dict) -> str:
    record = training.get("checkpoint_average")
    if not record:
        return ""
    if "validation_loss" not in record:
        return f"\nCheckpoint averaging was asked for: {record.get('reason')}; final_model, the best checkpoint, is exported.\n"
    verdict = ("so the average is the exported model" if record["used"]
               else "so the best checkpoint is exported")
    accuracy = (f" (validation accuracy {record['validation_accuracy']:.4f})"
                if record.get("validation_accuracy") is not None else "")
    return (f"\nCheckpoint averaging: the uniform average of {', '.join(record['checkpoints'])} has validation loss "
            f"{record['validation_loss']:.4f}{accuracy} against the best checkpoint's "
            f"{record['best_checkpoint_validation_loss']:.4f}, {verdict}.\n")


def _embeddings_note(config: dict) -> str:
    source = config.get("frozen_embeddings")
    return (f"\nThe word-embedding table was taken from `{source}` and kept fixed during training "
            "(the other layers start from the base model).\n" if source else "")


def _calibration_section(metadata: dict) -> str:
    """T, what it was fitted on, and ECE before/after per set and backend (empty when never calibrated)."""
    entry = metadata.get("calibration")
    rows = [(name, backend, m) for name, by_backend in metadata["metrics"].items()
            for backend, m in by_backend.items() if isinstance(m, dict) and "ece_uncalibrated" in m]
    if not entry and not rows:
        return ""
    lines = ["## Calibration", ""]
    if entry:
        lines.append(
            f"`score` is softmax(logits / T) with T = {entry['temperature']:.4f} (model.json `calibration`; both "
            f"backends apply it at load), fitted by temperature scaling on the {entry.get('backend', 'savedmodel')} "
            f"fp32 logits of {entry['n']} examples ({entry['fitted_on']}): NLL {entry['nll_before']:.4f} -> "
            f"{entry['nll_after']:.4f}" + (f", ECE {entry['ece_before']:.4f} -> {entry['ece_after']:.4f}"
                                          if "ece_before" in entry else "") + ". One scalar: labels and "
            "accuracy are unchanged." + (" T is at the end of its search range: the fitting data did not pin it down."
                                         if entry.get("at_bound") else ""))
    else:
        lines.append("Not calibrated: `score` is softmax(logits).")
    lines += ["", f"Expected calibration error ({entry.get('bins', 15) if entry else 15} equal-width bins on the "
              "predicted label's probability):", "",
              "| set | n | backend | ECE uncalibrated | ECE calibrated |", "|---|---|---|---|---|"]
    for name, backend, m in rows:
        calibrated = f"{m['ece']:.4f}" if "ece" in m else "not measured"
        lines.append(f"| {name} | {m['n']} | {backend} | {m['ece_uncalibrated']:.4f} | {calibrated} |")
    if any("reliability" in m for _, _, m in rows):
        lines += ["", "![reliability diagrams](reliability.png)"]
    return "\n".join(lines) + "\n"


def _truncation_words(metadata: dict) -> str:
    """How a text longer than max_length is cut, in words."""
    entry, room = metadata.get("truncation"), metadata["max_length"] - 2
    if not entry or entry["head"] == room:
        return f"a longer text is cut to its first {room} tokens"
    if entry["head"] == 0:
        return f"a longer text is read by its last {room} tokens"
    return f"a longer text is read by its first {entry['head']} and last {room - entry['head']} tokens"


def _truncation_section(metadata: dict) -> str:
    """The head/tail choice and its validation accuracy per candidate (empty without a ``truncation`` entry)."""
    entry = metadata.get("truncation")
    if not entry:
        return ""
    room = metadata["max_length"] - 2
    lines = ["## Long reviews", "",
             f"Inputs hold at most {metadata['max_length']} tokens: {_truncation_words(metadata)} "
             "(model.json `truncation`; both backends read it at load; training.steps.cut says why)."]
    if entry.get("by_head"):
        lines += ["", f"Chosen on the validation split, with the fp32 {entry['backend']} logits: "
                  f"{entry['longer_than_max_length']} of its {entry['n']} texts are longer than {metadata['max_length']} "
                  "tokens, and only they depend on the choice.", "",
                  "| first tokens | last tokens | validation accuracy | NLL |", "|---|---|---|---|"]
        for head, scores in sorted(entry["by_head"].items(), key=lambda kv: -int(kv[0])):
            mark = " (chosen)" if int(head) == entry["head"] else " (the head only)" if int(head) == room else ""
            lines.append(f"| {head}{mark} | {room - int(head)} | {scores['accuracy']:.4f} | {scores['nll']:.4f} |")
    train_head = metadata.get("training", {}).get("config", {}).get("train_head")
    lines += ["", f"The fine-tune read long training texts by their first {train_head} and last {room - train_head} "
              "tokens (`--train-head`)." if train_head is not None else
              f"The fine-tune read long training texts by their first {room} tokens."]
    if entry.get("pytorch_head") is not None and entry["pytorch_head"] != entry["head"]:
        lines += ["", f"The PyTorch rows of the metrics were measured at training with the first "
                  f"{entry['pytorch_head']} tokens and are kept as they were; the SavedModel and TFLite rows use the "
                  "cut above."]
    return "\n".join(lines) + "\n"


def _intended_four_way(metadata: dict) -> str:
    if metadata.get("four_way"):
        return (", with a star rating and a four-way sentiment (NEUTRAL, MIXED) from a rating head on the frozen "
                "encoder (see Stars and four-way sentiment).")
    return (". The binary head has no neutral class (3-star reviews were left out of its training); a model "
            "without a rating head answers only POSITIVE / NEGATIVE.")


def _four_way_section(metadata: dict) -> str:
    """Stars and four-way sentiment: the head, the rules and their figures (empty without a star head)."""
    head, rules = metadata.get("rating_head"), metadata.get("four_way")
    if not head or not rules:
        return ""
    metrics = rules.get("metrics_runtime", {}).get("tflite") or rules["metrics"]
    where = "TFLite int8 through the runtime" if rules.get("metrics_runtime") else "PyTorch fp32 features"
    rows = []
    for name in ("unseen_categories", "test"):
        m = metrics.get(name)
        if m:
            stars, three = m["stars"], m["three_way"]
            rows.append(f"| {name} | {stars['n']} | {stars['mae']:.3f} | {stars['mae_star_balanced']:.3f} | "
                        f"{stars['exact']:.3f} | {stars['within_one']:.3f} | {three['macro']['f1']:.3f} | "
                        f"{three['NEUTRAL']['precision']:.3f} / {three['NEUTRAL']['recall']:.3f} / "
                        f"{three['NEUTRAL']['f1']:.3f} |")
    sentence_rows = []
    for name in ("restaurants_test", "mams_val"):
        m = metrics.get(name)
        if m:
            table = m["four_way"]
            mixed = table.get("MIXED", {})
            neutral = table.get("NEUTRAL")
            sentence_rows.append(f"| {name} | {table['macro']['f1']:.3f} | {mixed.get('precision', 0):.3f} / "
                                 f"{mixed.get('recall', 0):.3f} / {mixed.get('f1', 0):.3f} | "
                                 + (f"{neutral['f1']:.3f} |" if neutral else "- |"))
    bias = rules["bias"]
    by_category = metrics.get("unseen_categories", {}).get("by_category") or \
        rules["metrics"].get("unseen_categories", {}).get("by_category", {})
    category_rows = "\n".join(f"| {c} | {v['n']} | {v['mae']:.3f} | {v['within_one']:.3f} | {v['three_way_macro_f1']:.3f} |"
                               for c, v in by_category.items())
    split = head.get("split", {})
    return f"""
## Stars and four-way sentiment

A rating head (a linear layer, 1-5 stars) reads the binary classifier's own input in the same forward pass:
the encoder and the binary head are frozen, so `label`, `score` and `scores` are unchanged (binary logits
moved by {metadata.get('export', {}).get('rating_head', {}).get('binary_logit_difference_on_validation')} on the
validation split). `stars` is the expected rating; `sentiment` is POSITIVE / NEGATIVE / NEUTRAL / MIXED
(app/fourway.py): NEUTRAL from the head's 3-star probability, MIXED from a text holding a clearly positive
and a clearly negative clause (min of the largest P(POSITIVE) and the largest P(NEGATIVE) over its clauses),
POSITIVE / NEGATIVE split as the binary head splits them; each class's score is multiplied by exp(bias) and
the four renormalised.

- Head: multinomial logistic regression, C = {head['C']} chosen on validation by the mean absolute error with
  every star weighted equally ({', '.join(f"C={t['C']}: {t['validation_mae_star_balanced']}" for t in head['tried'])}).
- Trained on star-rated reviews of {', '.join(sorted(split.get('train', {})))} (at most {split.get('cap_per_star')}
  per category and star); never on a review of the binary validation or test split, a held-out category or an
  evaluation set ({split.get('dropped_binary_heldout_or_eval')} dropped); the categories
  {', '.join(sorted(split.get('unseen', {})))} are kept out entirely and are the unseen-category test.
- Biases (log scale, POSITIVE and NEGATIVE 0): one sentence: NEUTRAL {bias['sentence']['NEUTRAL']:+.2f}, MIXED
  {bias['sentence']['MIXED']:+.2f} ({rules['fitted_on']['sentence']}); longer texts: NEUTRAL
  {bias['review']['NEUTRAL']:+.2f}, MIXED {bias['review']['MIXED']:+.2f} ({rules['fitted_on']['review']}).

Reviews ({where}; stars 1-2 NEGATIVE, 3 NEUTRAL, 4-5 POSITIVE, MIXED counted as NEUTRAL):

| set | reviews | MAE | MAE, stars equal | exact | within one | NEG/NEU/POS macro-F1 | NEUTRAL P / R / F1 |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Unseen categories, one by one:

| category | reviews | MAE | within one | macro-F1 |
|---|---|---|---|---|
{category_rows}

Sentences (restaurants: development data, not products):

| set | four-way macro-F1 | MIXED P / R / F1 | NEUTRAL F1 |
|---|---|---|---|
{chr(10).join(sentence_rows)}

![four-way reliability](four_way_reliability.png)
"""


def plot_four_way_reliability(metadata: dict, path: Path) -> bool:
    """Reliability of the top four-way score on labelled sentences (no diagram without a four-way entry)."""
    bins = (metadata.get("four_way") or {}).get("reliability", {}).get("restaurants_test")
    if not bins:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(c, a, n) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"], strict=True) if n]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
    ax.plot([p[0] for p in points], [p[1] for p in points], "o-", markersize=4)
    for c, a, n in points:
        ax.annotate(str(n), (c, a), fontsize=6, textcoords="offset points", xytext=(2, -8))
    ax.set_xlim(0.2, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("top four-way score")
    ax.set_ylabel("share right")
    ax.set_title("Four-way reliability, restaurant test sentences", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write_model_card(metadata: dict, path: Path) -> None:
    """MODEL_CARD.md from model.json's content."""
    data = metadata["training"]["data"]
    config = metadata["training"]["config"]
    card = f"""# Model card: {metadata['name']} ({metadata['version']})

Binary sentiment classifier for English product reviews: {', '.join(metadata['labels'])}.
Architecture {metadata['architecture']}, fine-tuned from `{metadata['base_model']}` in PyTorch with the
Hugging Face Trainer, converted to TensorFlow (`from_pt=True`), exported as a SavedModel and a
dynamic-range int8 TFLite file (float32 embedding tables). Inputs hold at most {metadata['max_length']} tokens:
{_truncation_words(metadata)}.

## Intended use

Scoring the polarity of customer reviews (a few sentences to a few paragraphs) in English{_intended_four_way(metadata)}
Not for: other languages, sarcasm-heavy or non-review text, decisions about individuals.

## Reproduce

```
{metadata['training'].get('command', 'make train')}
```
{_base_note(metadata)}{_reexport_note(metadata)}
## Training data

Files: {len(data.get('files', []))}; examples after cleaning and de-duplication: {data.get('examples')};
training examples used: {data.get('train')} ({data.get('train_labels')}){_titles_note(data)}; validation {data.get('validation')},
test {data.get('test')}. Rows dropped: bad {data.get('bad_rows')}, neutral {data.get('neutral_dropped')},
duplicates {data.get('duplicates_dropped')}, conflicting labels {data.get('conflicting_labels_dropped')};
training texts dropped because they also occur in held-out or evaluation data:
{data.get('train_dropped_overlap')} (of which in evaluation sets: {data.get('train_dropped_overlap_eval_sets')}).

{_sources_table(data)}
Configuration: epochs {config['epochs']} (min {config['min_epochs']}, patience {config['patience']}),
max steps {config['max_steps']}, batch {config['batch_size']}, learning rate {config['learning_rate']},
warm-up {config['warmup_steps']}, weight decay {config['weight_decay']}, max length {config['max_length']},
seed {config['seed']}, balanced {config['balance']}, title examples {config.get('title_examples', False)},
bf16 {config.get('bf16', False)}. Trained for {metadata['training'].get('epochs_run')} epochs,
{metadata['training'].get('steps')} steps, {metadata['training'].get('train_seconds')} s on {metadata['training'].get('device')}.
{_embeddings_note(config)}{_averaging_note(metadata['training'])}{_where_section(metadata['training'])}{_soup_section(metadata)}
{("### Why this configuration" + chr(10) + chr(10) + metadata['training']['notes']) if metadata['training'].get('notes') else ''}

## Metrics

Precision, recall and F1 are for the POSITIVE class.

{_metrics_table(metadata['metrics'])}

### TFLite int8 vs SavedModel fp32

{_agreement_table(metadata['metrics'])}

PyTorch -> TensorFlow max logit difference on the probe set: {metadata['export']['max_logit_difference']:.2e}.
TFLite vs fp32 label agreement on the validation split: {metadata['export']['tflite_validation_agreement']}.

![confusion matrices](confusion_matrices.png)

![learning curves](learning_curves.png)

{_categories_section(metadata)}
{_truncation_section(metadata)}
{_calibration_section(metadata)}{_four_way_section(metadata)}
## Limits

- Trained on {', '.join(sorted(data.get('sources', {})) or ['the files listed above'])}: other domains
  (movies, restaurants) score lower, see the SST-2 and IMDB rows, and so may product categories not listed above.
- Middling reviews ("good, however ...") are forced into one of two classes; the score then sits
  near 0.5. Read `score`, not just `label`.
- Texts longer than {metadata['max_length']} tokens are truncated: {_truncation_words(metadata)}, and the
  response says `truncated`. What lies between is not read.
"""
    path.write_text(card, encoding="utf-8")


def plot_reliability(metrics: dict[str, dict], path: Path, backend: str = "tflite") -> bool:
    """Reliability diagrams (accuracy against confidence per bin, before and after calibration) for ``backend``.

    One panel per evaluation set that has reliability bins. Returns False (and writes nothing) when none has.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, by_backend in metrics.items() if "reliability" in by_backend.get(backend, {})]
    if not names:
        return False
    columns = min(4, len(names))
    rows = (len(names) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names, strict=False):
        values = metrics[name][backend]
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
        lowest = 1.0
        for key, ece_key, style, label in (("reliability_uncalibrated", "ece_uncalibrated", "s--", "before"),
                                           ("reliability", "ece", "o-", "after")):
            bins = values[key]
            points = [(c, a) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"], strict=True) if n]
            lowest = min([lowest, *(c for c, _ in points)])
            ax.plot(*zip(*points, strict=True), style, markersize=4, label=f"{label} (ECE {values[ece_key]:.3f})")
        ax.set_xlim(min(0.45, lowest - 0.05), 1.0)  # two classes: confidence is never below 0.5
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Reliability ({backend}, {len(bins['count'])} bins)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write_reports(metadata: dict, output: Path, log_history: list[dict] | None) -> None:
    """model.json, the plots and MODEL_CARD.md from ``metadata``."""
    if (drop := out_of_category_drop(metadata["metrics"])) is not None:
        metadata["out_of_category"] = drop
    (output / "model.json").write_text(json.dumps(metadata, indent=2))
    plot_confusion_matrices({k: v for k, v in metadata["metrics"].items() if k != "validation"}, list(LABELS),
                            output / "confusion_matrices.png")
    if log_history is not None:
        plot_learning_curves(log_history, output / "learning_curves.png", metadata["training"].get("checkpoint_average"))
    if not plot_reliability(metadata["metrics"], output / "reliability.png"):
        (output / "reliability.png").unlink(missing_ok=True)  # no ECE measured: no diagram of another model's
    if not plot_categories(metadata["metrics"], output / "categories.png"):
        (output / "categories.png").unlink(missing_ok=True)
    if not plot_four_way_reliability(metadata, output / "four_way_reliability.png"):
        (output / "four_way_reliability.png").unlink(missing_ok=True)
    write_model_card(metadata, output / "MODEL_CARD.md")
