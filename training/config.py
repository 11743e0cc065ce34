"""Training configuration. The defaults are the original model's configuration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_BASE_MODEL = "distilbert-base-uncased"
LABELS = ("NEGATIVE", "POSITIVE")  # output order; label index 1 = positive everywhere in training/
HELDOUT_PREFIX = "heldout/"  # evaluation sets made of a product category kept out of training (--holdout-category)
HELDOUT_ALL = "heldout/all"  # all held-out categories together


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 CPU flags of hardware bfloat16 arithmetic


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this CPU computes in bfloat16 natively (None where /proc/cpuinfo cannot be read)."""
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return None
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


@dataclass
class TrainConfig:
    """Everything a training run needs; validated on creation."""

    data: list[Path] = field(default_factory=list, metadata={"help": "training data file or folder (repeatable)"})
    format: str = field(default="csv", metadata={"help": "format of --data (see `--format` choices)"})
    eval_data: list[Path] = field(default_factory=list, metadata={"help": "extra evaluation set (repeatable)"})
    eval_format: str = field(default="auto", metadata={"help": "format of --eval-data"})
    base_model: str = field(default=DEFAULT_BASE_MODEL, metadata={"help": "hub name or local directory"})
    base_revision: str = field(default="main", metadata={"help": "hub revision (commit) of --base-model"})
    output: Path = field(default=Path("model_artifacts"), metadata={"help": "artifact directory"})
    name: str | None = field(default=None, metadata={
        "help": "model name in model.json and responses (default sentiment-<output folder>, "
                "sentiment-distilbert for model_artifacts)"})
    run_dir: Path | None = field(default=None, metadata={"help": "checkpoints and logs (default runs/<output name>)"})
    epochs: float = field(default=10, metadata={"help": "at most this many epochs"})
    min_epochs: int = field(default=5, metadata={"help": "early stopping never stops before this epoch"})
    patience: int = field(default=2, metadata={"help": "early-stopping patience in evaluations"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (overrides epochs)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "cap on training examples"})
    train_source: list[str] = field(default_factory=list, metadata={
        "help": "train only on texts from files whose path contains one of these (split unchanged)"})
    balance: bool = field(default=False, metadata={"help": "down-sample the majority label in training"})
    holdout_category: list[str] = field(default_factory=list, metadata={
        "help": "product category kept out of training and validation entirely and evaluated on its own (repeatable)"})
    category_cap: int | None = field(default=None, metadata={
        "help": "at most this many training texts per product category and label (spreads the sample over categories)"})
    after_sample: int | None = field(default=None, metadata={
        "help": "continued training: leave out the reviews that a run with --category-cap N (same --seed, --balance "
                "and split) trained on, so the sample is of reviews the base model has not seen"})
    fine_tune_only: bool = field(default=False, metadata={
        "help": "stop after the fine-tune (run_dir/final_model): no evaluation, export or model.json"})
    title_examples: bool = field(default=False, metadata={
        "help": "also train on each training review's title as a short text of its own"})
    bf16: bool = field(default=False, metadata={
        "help": "bfloat16 mixed precision on CPU (fast on CPUs with AMX / AVX512-BF16); CUDA uses fp16 regardless"})
    frozen_embeddings: Path | None = field(default=None, metadata={
        "help": "take the word-embedding table from this model directory (same vocabulary) and keep it fixed"})
    average_checkpoints: bool = field(default=False, metadata={
        "help": "export the average of the kept checkpoints when its validation loss is no higher than the best's"})
    max_length: int = field(default=128, metadata={"help": "tokens per text (longer is truncated)"})
    train_head: int | None = field(default=None, metadata={
        "help": "fine-tune on the first N and last max_length - 2 - N tokens of a longer text (default: the first "
                "max_length - 2, as the tokenizer truncates)"})
    head_tail: bool = field(default=True, metadata={
        "help": "a longer text keeps its first and last tokens, the split chosen on validation (training.steps.cut); "
                "False keeps only the first max_length - 2"})
    batch_size: int = field(default=32, metadata={"help": "per-device batch size"})
    learning_rate: float = field(default=5e-5, metadata={"help": "peak learning rate (Trainer default)"})
    warmup_steps: int = field(default=500, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    group_by_length: bool = field(default=True, metadata={"help": "batch texts of similar length together"})
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42
    sample_seed: int | None = field(default=None, metadata={"help": "seed of --max-train-samples sampling (default --seed)"})
    resume: bool = False
    notes: str = field(default="", metadata={"help": "why this configuration (goes into the model card)"})
    text_column: str = "cleaned_text"
    label_column: str = "sentiment"
    positive_label: str = "1"
    negative_label: str = "2"

    def __post_init__(self) -> None:
        self.data = [Path(p) for p in self.data]
        self.eval_data = [Path(p) for p in self.eval_data]
        self.output = Path(self.output)
        if self.frozen_embeddings is not None:
            self.frozen_embeddings = Path(self.frozen_embeddings)
        if self.run_dir is None:
            self.run_dir = Path("runs") / self.output.resolve().name
        self.run_dir = Path(self.run_dir)
        if self.name is None:
            folder = self.output.resolve().name
            self.name = "sentiment-distilbert" if folder == "model_artifacts" else f"sentiment-{folder}"
        if not self.data:
            raise ValueError("at least one --data file or folder is required")
        if self.epochs <= 0:
            raise ValueError(f"--epochs must be positive, got {self.epochs}")
        if self.min_epochs < 0 or self.min_epochs > self.epochs:
            raise ValueError(f"--min-epochs must be between 0 and --epochs ({self.epochs}), got {self.min_epochs}")
        if self.max_length < 8 or self.max_length > 512:
            raise ValueError(f"--max-length must be between 8 and 512, got {self.max_length}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 < self.validation_fraction < 0.5 or not 0 < self.test_fraction < 0.5:
            raise ValueError("validation and test fractions must be between 0 and 0.5")
        if self.max_train_samples is not None and self.max_train_samples < 2:
            raise ValueError(f"--max-train-samples must be at least 2, got {self.max_train_samples}")
        if self.bf16 and cpu_has_native_bf16() is False and not _cuda_available():
            # measured on an AVX2-only AMD EPYC: 76 s per step of 32 x 128 tokens instead of about 2 s in float32
            raise ValueError(f"--bf16: this CPU has no native bfloat16 ({' / '.join(NATIVE_BF16_FLAGS)} not in "
                             "/proc/cpuinfo), so autocast would emulate it, dozens of times slower than float32; "
                             "drop --bf16 (make train-bundled adds it only where the CPU has it)")
        if self.category_cap is not None and self.category_cap < 1:
            raise ValueError(f"--category-cap must be at least 1, got {self.category_cap}")
        if self.after_sample is not None and self.after_sample < 1:
            raise ValueError(f"--after-sample must be at least 1, got {self.after_sample}")
        if self.after_sample is not None and not self.category_cap:
            raise ValueError("--after-sample needs --category-cap: it continues a capped sample with another one")
        if self.train_head is not None and not 0 <= self.train_head <= self.max_length - 2:
            raise ValueError(f"--train-head must be between 0 and --max-length - 2 ({self.max_length - 2}), "
                             f"got {self.train_head}")
        if self.positive_label == self.negative_label:
            raise ValueError("--positive-label and --negative-label must differ")

    def to_dict(self) -> dict[str, object]:
        return {k: (str(v) if isinstance(v, Path) else [str(p) for p in v] if isinstance(v, list) else v)
                for k, v in asdict(self).items()}


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
