"""The model runtime: artifact loading, tokenization and inference with TFLite or SavedModel.

No torch and no transformers here: the container imports only ``tokenizers``, NumPy and the one
backend it was built for, which is what keeps cold starts short.

A text longer than max_length tokens is cut as model.json's ``truncation`` entry says: its first
``head`` tokens and its last max_length - 2 - head (the end of a review often carries its verdict);
without the entry, the first max_length - 2, as the tokenizer itself truncates.

Both backends are read at their ``logits`` output and turned into probabilities here, as
softmax(logits / T) with the temperature T of model.json's ``calibration`` entry (1.0 when there
is none): one calibration, applied identically to the SavedModel and the TFLite file.

A model with a star-rating head also has a ``star_logits`` output (1-5 stars, same forward pass).
With model.json's ``four_way`` entry every prediction then carries the four-way sentiment and the
stars (``app.fourway``), for which the text's clauses are scored in the same batch as the text, and,
on request, one result per sentence (``app.segments``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app import fourway, segments

if TYPE_CHECKING:
    from app.settings import Settings

BACKENDS = ("tflite", "savedmodel")
REQUIRED_METADATA = ("labels", "max_length", "version", "name")
BACKEND_FILES = {"tflite": "model.tflite", "savedmodel": "saved_model"}


class ModelLoadError(RuntimeError):
    """An artifact is missing or broken; the message names the file and what is wrong."""


@dataclass(frozen=True)
class SentencePrediction:
    """One sentence of a text: ``text[start:end]``, its binary label and score, its four-way sentiment."""

    start: int
    end: int
    label: str
    score: float
    sentiment: str
    sentiment_scores: dict[str, float]


@dataclass(frozen=True)
class Prediction:
    """One text's result: the arg-max label, its probability, all probabilities, truncation; with a star head,
    the four-way sentiment and the stars; on request, its sentences."""

    label: str
    score: float
    scores: dict[str, float]
    truncated: bool
    sentiment: str | None = None
    sentiment_scores: dict[str, float] | None = None
    stars: float | None = None
    star_scores: dict[str, float] | None = None
    sentences: list[SentencePrediction] | None = None


Outputs = dict[str, np.ndarray]
Runner = Callable[[np.ndarray, np.ndarray], Outputs]
OUTPUTS = ("logits", "star_logits")


def _tflite_runner(path: Path, num_threads: int | None, pad_id: int = 0) -> Runner:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's bundled interpreter, where TensorFlow is installed
        try:
            import tensorflow as tf
        except ImportError:
            raise ModelLoadError("MODEL_BACKEND=tflite needs ai-edge-litert, which is not installed "
                                 "(image built with another BACKEND? rebuild with --build-arg BACKEND=tflite)") from None
        Interpreter = tf.lite.Interpreter  # noqa: N806
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing (needed by MODEL_BACKEND=tflite)")
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        runner = interpreter.get_signature_runner("serving_default")
        # Optional fixed-shape one-text signatures (single_<L>): a static graph, no re-allocation per length.
        fixed = sorted((int(key.removeprefix("single_")), interpreter.get_signature_runner(key))
                       for key in interpreter.get_signature_list() if key.startswith("single_"))
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: not a loadable TFLite model with a serving_default signature ({exc})") from exc
    # One input pair per fixed length, reused: filling it costs less than np.pad per request.
    buffers = {length: (np.full((1, length), pad_id, np.int32), np.zeros((1, length), np.int32)) for length, _ in fixed}
    for length, fixed_runner in fixed:  # prepare each subgraph now, not on the first request of that length
        fixed_runner(input_ids=buffers[length][0], attention_mask=np.ones((1, length), np.int32))

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> Outputs:
        if input_ids.shape[0] == 1:
            used = input_ids.shape[1]
            for length, fixed_runner in fixed:
                if length >= used:
                    ids, mask = buffers[length]
                    ids[0, :used], ids[0, used:] = input_ids[0], pad_id
                    mask[0, :used], mask[0, used:] = attention_mask[0], 0
                    return fixed_runner(input_ids=ids, attention_mask=mask)
        return runner(input_ids=input_ids, attention_mask=attention_mask)

    run.fixed_lengths = [length for length, _ in fixed]  # type: ignore[attr-defined]
    return run


def _savedmodel_runner(path: Path) -> Runner:
    if not (path / "saved_model.pb").is_file():
        raise ModelLoadError(f"{path}/saved_model.pb: missing (needed by MODEL_BACKEND=savedmodel)")
    try:
        import tensorflow as tf
    except ImportError:
        raise ModelLoadError("MODEL_BACKEND=savedmodel needs tensorflow-cpu, which is not installed "
                             "(image built with BACKEND=tflite? rebuild with --build-arg BACKEND=savedmodel)") from None

    try:
        function = tf.saved_model.load(str(path)).signatures["serving_default"]
    except (KeyError, OSError, ValueError, tf.errors.OpError) as exc:
        raise ModelLoadError(f"{path}: not a loadable SavedModel with a serving_default signature ({exc})") from exc

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> Outputs:
        outputs = function(input_ids=tf.constant(input_ids), attention_mask=tf.constant(attention_mask))
        return {name: outputs[name].numpy() for name in OUTPUTS if name in outputs}

    return run


def read_metadata(model_dir: Path) -> dict[str, object]:
    """``model.json``, checked for the fields the runtime needs."""
    path = model_dir / "model.json"
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing (is MODEL_DIR={model_dir} a model_artifacts directory?)")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from exc
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ModelLoadError(f"{path}: missing field(s) {missing}")
    labels = metadata["labels"]
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
        raise ModelLoadError(f"{path}: 'labels' must be a list of at least two label names, got {labels!r}")
    calibration_temperature(metadata, path)
    truncation_head(metadata, path)
    if metadata.get("four_way") is not None:
        try:
            fourway.read_rules(metadata["four_way"])
        except fourway.FourWayError as exc:
            raise ModelLoadError(f"{path}: {exc}") from exc
    return metadata


def truncation_head(metadata: dict[str, object], path: Path | str = "model.json") -> int:
    """Tokens kept from the start of a long text (model.json ``truncation.head``); max_length - 2 without the entry.

    Raises:
        ModelLoadError: ``max_length`` is not an integer > 2, or the entry is there but is not
            ``{"head": H}`` with an integer 0 <= H <= max_length - 2 (naming ``path``).
    """
    max_length = metadata.get("max_length")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 2:
        raise ModelLoadError(f"{path}: 'max_length' must be an integer > 2, got {max_length!r}")
    room = max_length - 2  # [CLS] and [SEP] take two
    truncation = metadata.get("truncation")
    if truncation is None:
        return room
    head = truncation.get("head") if isinstance(truncation, dict) else None
    if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head <= room:
        raise ModelLoadError(f"{path}: 'truncation' must be an object with an integer \"head\" from 0 to "
                             f"{room} (max_length - 2), got {truncation!r}")
    return head


def cut_ids(ids: list[int], max_length: int, head: int) -> list[int]:
    """``ids`` ([CLS] first, [SEP] last) cut to ``max_length``: [CLS], the first ``head`` tokens, the last
    max_length - 2 - ``head``, [SEP]. Ids that fit are returned as they are."""
    if len(ids) <= max_length:
        return ids
    tail = max_length - 2 - head
    return ids[: 1 + head] + ids[len(ids) - 1 - tail :]


def calibration_temperature(metadata: dict[str, object], path: Path | str = "model.json") -> float:
    """The softmax temperature of model.json's ``calibration`` entry; 1.0 (uncalibrated) when there is none.

    Raises:
        ModelLoadError: the entry is there but is not ``{"method": "temperature", "temperature": T}``
            with a finite T > 0 (naming ``path``).
    """
    calibration = metadata.get("calibration")
    if calibration is None:
        return 1.0
    if not isinstance(calibration, dict) or calibration.get("method") != "temperature":
        raise ModelLoadError(f"{path}: 'calibration' must be an object with \"method\": \"temperature\", "
                             f"got {calibration!r}")
    temperature = calibration.get("temperature")
    if (isinstance(temperature, bool) or not isinstance(temperature, int | float)
            or not math.isfinite(temperature) or temperature <= 0):
        raise ModelLoadError(f"{path}: 'calibration.temperature' must be a positive number, got {temperature!r}")
    return float(temperature)


def scaled_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) over the last axis, as float32 (the max is subtracted first: no overflow).

    The arg-max, and so the label, is the same for every temperature > 0.
    """
    # One new array, then in place: the request path allocates nothing else of the batch's size.
    scaled = np.multiply(logits, np.float32(1.0 / temperature), dtype=np.float32)
    scaled -= scaled.max(axis=-1, keepdims=True)
    np.exp(scaled, out=scaled)
    scaled /= scaled.sum(axis=-1, keepdims=True)
    return scaled


class SentimentModel:
    """Artifacts loaded once; ``predict`` maps texts to predictions in input order."""

    def __init__(self, model_dir: Path | str, backend: str = "tflite", num_threads: int | None = None,
                 batch_size: int = 32) -> None:
        if backend not in BACKENDS:
            raise ModelLoadError(f"MODEL_BACKEND={backend!r}: choose one of {BACKENDS}")
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        self.backend = backend
        self.batch_size = batch_size
        self.metadata = read_metadata(self.model_dir)
        self.labels: list[str] = list(self.metadata["labels"])  # type: ignore[arg-type]
        self.max_length = int(self.metadata["max_length"])  # type: ignore[arg-type]
        self.name = str(self.metadata["name"])
        self.version = str(self.metadata["version"])
        self.temperature = calibration_temperature(self.metadata, self.model_dir / "model.json")
        tokenizer_path = self.model_dir / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise ModelLoadError(f"{tokenizer_path}: missing")
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ModelLoadError(f"{tokenizer_path}: not a Hugging Face tokenizers file ({exc})") from exc
        vocab_size = self.metadata.get("vocab_size")
        if vocab_size is not None and self.tokenizer.get_vocab_size() > int(vocab_size):  # type: ignore[arg-type]
            raise ModelLoadError(
                f"{tokenizer_path}: {self.tokenizer.get_vocab_size()} tokens, but the model embeds only {vocab_size} "
                "(model.json vocab_size): the tokenizer does not belong to this model")
        self.head = truncation_head(self.metadata, self.model_dir / "model.json")
        self.tokenizer.no_truncation()  # the whole text, then cut_ids: head and tail
        self.tokenizer.no_padding()
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        path = self.model_dir / BACKEND_FILES[backend]
        self.num_threads = num_threads or default_threads()
        self._run = (_tflite_runner(path, self.num_threads, self.pad_id) if backend == "tflite"
                     else _savedmodel_runner(path))
        self.has_stars = False
        self._check_outputs(path)
        self.rules = fourway.read_rules(self.metadata["four_way"]) if self.metadata.get("four_way") else None
        if self.rules is not None and not self.has_stars:
            raise ModelLoadError(f"{path}: model.json has four-way rules, but the model has no 'star_logits' output "
                                 "(exported without its rating head?)")
        self._positive = self.labels.index("POSITIVE") if "POSITIVE" in self.labels else len(self.labels) - 1
        self._negative = self.labels.index("NEGATIVE") if "NEGATIVE" in self.labels else 0

    @classmethod
    def from_settings(cls, settings: Settings) -> SentimentModel:
        """The model as the environment configures it (MODEL_DIR, MODEL_BACKEND, threads, batch size)."""
        return cls(settings.model_dir, settings.backend, settings.num_threads, settings.inference_batch_size)

    def info(self) -> dict[str, str]:
        """Name, version and backend: what every response and summary reports."""
        return {"name": self.name, "version": self.version, "backend": self.backend}

    def _check_outputs(self, path: Path) -> None:
        """Warm the backend up and check its outputs against model.json's labels."""
        # The raw output, not predict_proba: its buffer is shaped by model.json's labels, which is what is checked.
        outputs = self._run(*self._arrays([self.tokenizer.encode("warm-up").ids]))
        probe = np.asarray(outputs["logits"], dtype=np.float32)
        if probe.shape != (1, len(self.labels)):
            raise ModelLoadError(
                f"{path}: outputs shape {probe.shape}, but model.json lists {len(self.labels)} labels"
            )
        if not np.all(np.isfinite(probe)):
            raise ModelLoadError(f"{path}: 'logits' output is not finite: {probe}")
        if "star_logits" in outputs:
            stars = np.asarray(outputs["star_logits"])
            if stars.shape != (1, len(fourway.STAR_LABELS)) or not np.all(np.isfinite(stars)):
                raise ModelLoadError(f"{path}: 'star_logits' output is {stars.shape} {stars}, not 5 finite star logits")
            self.has_stars = True

    def _arrays(self, batch: Sequence[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Pad a batch of token-id lists to its longest member (dynamic padding)."""
        longest = max(len(ids) for ids in batch)
        input_ids = np.full((len(batch), longest), self.pad_id, dtype=np.int32)
        attention_mask = np.zeros((len(batch), longest), dtype=np.int32)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask

    def predict_proba(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        """Calibrated probabilities [N, labels] in input order, and whether each text was truncated.

        Texts are batched by token length so that short texts are not padded to long ones.
        """
        return self._infer(texts, self.temperature)

    def predict_logits(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        """The backend's raw logits [N, labels] in input order (no calibration), and truncation."""
        return self._infer(texts, None)

    def predict_stars(self, texts: Sequence[str]) -> np.ndarray:
        """The rating head's probabilities [N, 5] (1-5 stars) in input order; the model must have the head."""
        if not self.has_stars:
            raise ModelLoadError(f"{self.model_dir}: the model has no 'star_logits' output")
        if not texts:
            return np.zeros((0, len(fourway.STAR_LABELS)), dtype=np.float32)
        full = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        return self._infer_both(full, self.head, self.temperature)[1]  # type: ignore[return-value]

    def _infer(self, texts: Sequence[str], temperature: float | None) -> tuple[np.ndarray, list[bool]]:
        """Logits (``temperature`` None) or softmax(logits / temperature), batched by token length."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32), []
        # One text: encode() skips encode_batch's thread-pool hand-off (~0.06 ms of a ~2 ms request).
        encodings = [self.tokenizer.encode(texts[0])] if len(texts) == 1 else self.tokenizer.encode_batch(list(texts))
        full = [e.ids for e in encodings]
        return self._infer_ids(full, self.head, temperature), [len(x) > self.max_length for x in full]

    def _infer_ids(self, full: Sequence[list[int]], head: int, temperature: float | None) -> np.ndarray:
        """Logits or calibrated probabilities for untruncated token ids cut with ``head``, batched by length."""
        return self._infer_both(full, head, temperature)[0]

    def _infer_both(self, full: Sequence[list[int]], head: int,
                    temperature: float | None) -> tuple[np.ndarray, np.ndarray | None]:
        """``_infer_ids``, and the star probabilities [N, 5] where the model has a star head (else None)."""
        ids = [cut_ids(x, self.max_length, head) for x in full]
        order = np.argsort([len(x) for x in ids], kind="stable")
        outputs = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        stars = np.zeros((len(ids), len(fourway.STAR_LABELS)), dtype=np.float32) if self.has_stars else None
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            input_ids, attention_mask = self._arrays([ids[i] for i in index])
            result = self._run(input_ids, attention_mask)
            logits = result["logits"]
            outputs[index] = logits if temperature is None else scaled_softmax(logits, temperature)
            if stars is not None:
                stars[index] = scaled_softmax(result["star_logits"])
        return outputs, stars

    def predict(self, texts: Sequence[str], sentences: bool = False) -> list[Prediction]:
        """One prediction per text, in input order; with ``sentences``, each with its sentences' results."""
        if self.rules is None:
            probabilities, truncated = self.predict_proba(texts)
            return [Prediction(**self._binary(row), truncated=was_truncated)
                    for row, was_truncated in zip(probabilities, truncated, strict=True)]
        return self._predict_four_way(texts, sentences)

    def _binary(self, row: np.ndarray) -> dict:
        best = int(np.argmax(row))
        return {"label": self.labels[best], "score": round(float(row[best]), 6),
                "scores": {label: round(float(p), 6) for label, p in zip(self.labels, row, strict=True)}}

    def _predict_four_way(self, texts: Sequence[str], with_sentences: bool) -> list[Prediction]:
        """The texts in one call, exactly as without the star head (``label``, ``score``, ``scores`` and
        ``truncated`` do not change); their clauses (and sentences on request) in a second batched call, only
        for texts that have more than one; then ``app.fourway``."""
        rules = self.rules or {}
        rows = {text: i for i, text in enumerate(texts)}  # a piece equal to a text reuses the text's row
        pieces: dict[str, int] = {}

        def need(piece: str) -> int:
            if piece in rows:
                return rows[piece]
            return pieces.setdefault(piece, len(texts) + len(pieces))

        plans = []
        for index, text in enumerate(texts):
            spans = segments.sentences(text)
            clauses = [segments.clauses(text, s) for s in spans]
            parts = [c for group in clauses for c in group]
            part_rows = [need(text[c.start:c.end]) for c in parts] if len(parts) > 1 else []
            sentence_plan = []
            if with_sentences:
                for span, group in zip(spans, clauses, strict=True):
                    sentence_plan.append((span, need(text[span.start:span.end]),
                                          [need(text[c.start:c.end]) for c in group] if len(group) > 1 else []))
            plans.append((index, part_rows, len(spans), sentence_plan))
        encodings = [self.tokenizer.encode(texts[0])] if len(texts) == 1 else self.tokenizer.encode_batch(list(texts))
        full = [e.ids for e in encodings]
        binary, stars = self._infer_both(full, self.head, self.temperature)
        if pieces:
            extra = [e.ids for e in self.tokenizer.encode_batch(list(pieces))]
            more_binary, more_stars = self._infer_both(extra, self.head, self.temperature)
            binary = np.concatenate([binary, more_binary])
            stars = np.concatenate([stars, more_stars])  # type: ignore[list-item]
        if stars is None:  # has_stars was checked at start-up
            raise ModelLoadError("the model lost its 'star_logits' output")

        def four(index: int, part_rows: list[int], sentence_count: int) -> np.ndarray:
            mixed = fourway.mixed_evidence(binary[part_rows], self._positive, self._negative) if part_rows else 0.0
            raw = fourway.raw_scores(binary[index:index + 1], self._positive, self._negative, stars[index:index + 1],
                                     np.array([mixed]))
            return fourway.apply_bias(raw, rules[fourway.rule_for(sentence_count)])[0]

        results = []
        for index, part_rows, sentence_count, sentence_plan in plans:
            scores4 = four(index, part_rows, sentence_count)
            sentence_results = None
            if with_sentences:
                sentence_results = []
                for span, row, clause_rows in sentence_plan:
                    sentence4 = four(row, clause_rows, 1)
                    binary_fields = self._binary(binary[row])
                    sentence_results.append(SentencePrediction(
                        start=span.start, end=span.end, label=binary_fields["label"], score=binary_fields["score"],
                        sentiment=fourway.SENTIMENTS[int(np.argmax(sentence4))],
                        sentiment_scores=fourway.scores_dict(sentence4, fourway.SENTIMENTS)))
            results.append(Prediction(
                **self._binary(binary[index]), truncated=len(full[index]) > self.max_length,
                sentiment=fourway.SENTIMENTS[int(np.argmax(scores4))],
                sentiment_scores=fourway.scores_dict(scores4, fourway.SENTIMENTS),
                stars=round(float(fourway.expected_stars(stars[index:index + 1])[0]), 4),
                star_scores=fourway.scores_dict(stars[index], fourway.STAR_LABELS),
                sentences=sentence_results))
        return results


def default_threads() -> int:
    """Interpreter threads: the CPUs this process may use (Lambda gives ~1 vCPU per 1,769 MB)."""
    return max(1, len(os.sched_getaffinity(0)))
