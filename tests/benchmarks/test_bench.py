"""The benchmark's own arithmetic and worker protocol (its timings are not asserted: see `make bench`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.run import cpu_info, latency_summary, run_worker
from tests.conftest import BUNDLED


def test_latency_summary_pools_rounds_and_keeps_each_rounds_p50() -> None:
    rounds = [[1.0, 2.0, 3.0, 4.0, 100.0], [5.0, 6.0, 7.0, 8.0, 9.0]]
    summary = latency_summary(rounds)
    assert summary["p50_ms"] == 5.5  # median of the ten requests, not of the two round medians
    assert summary["p99_ms"] == 100.0
    assert summary["p50_rounds_ms"] == [3.0, 7.0]


@pytest.mark.parametrize(("flags", "expected"), [
    ("fpu sse4_2 avx avx2 fma", "AVX2"),  # this project's 2-core EPYC: XNNPACK's int8 kernel is the slow one
    ("avx2 avx512f avx512bw avx512_vnni avx512_bf16", "AVX512-VNNI"),
    ("avx2 avx_vnni", "AVX-VNNI"),
    ("avx2 avx512bw avx512_vnni amx_tile amx_int8", "AMX-INT8"),
    ("sse2 sse4_2", "unknown"),
])
def test_cpu_info_names_the_best_int8_dot_product(flags: str, expected: str, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert cpu_info(cpuinfo) == {"cpu": "AMD EPYC", "int8_dot_product": expected}


def test_cpu_info_reads_arm_features_and_survives_a_missing_file(tmp_path: Path) -> None:
    arm = tmp_path / "cpuinfo"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd asimddp sve i8mm bf16\n")
    assert cpu_info(arm)["int8_dot_product"] == "Arm I8MM"
    assert cpu_info(tmp_path / "absent") == {"cpu": "", "int8_dot_product": "unknown"}


@pytest.mark.skipif(not (BUNDLED / "model.tflite").is_file(), reason="no bundled model in model_artifacts/")
@pytest.mark.parametrize("engine", ["tflite", "tflite-model-only", "tflite-binary", "tflite-sentences"])
def test_latency_worker_times_single_requests(engine: str, tmp_path: Path) -> None:
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps({"single": ["Great kettle, boils fast.", "Broke after a week."], "agreement": []}))
    result = run_worker(engine, "latency", texts, timeout=300)
    assert len(result["latencies_ms"]) == 200  # the worker's default request count, cycling over the texts
    assert all(x > 0 for x in result["latencies_ms"])
    assert result["peak_rss_mb"] > 50  # a loaded model, read from /proc


def test_peers_are_rebuilt_when_the_bundled_model_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import engines

    version = {"now": "aaaa"}
    built: list[str] = []
    monkeypatch.setattr(engines, "CACHE", tmp_path)
    monkeypatch.setattr(engines, "bundled_version", lambda: version["now"])

    def builder(name: str, path: Path) -> Callable[[], None]:
        def build() -> None:
            built.append(name)
            path.write_text(version["now"])  # what the peer was derived from
        return build

    peers = {tmp_path / "tf": builder("tf", tmp_path / "tf"), tmp_path / "onnx": builder("onnx", tmp_path / "onnx")}
    engines.prepare(peers)
    assert built == ["tf", "onnx"]
    engines.prepare(peers)  # same model: reused
    assert built == ["tf", "onnx"]
    version["now"] = "bbbb"  # a new bundled model: every peer derived again
    engines.prepare(peers)
    assert built == ["tf", "onnx", "tf", "onnx"]
    assert (tmp_path / "tf").read_text() == (tmp_path / "onnx").read_text() == "bbbb"
    (tmp_path / "onnx").unlink()  # a missing peer alone is rebuilt
    engines.prepare(peers)
    assert built[-1] == "onnx" and len(built) == 5


def test_multiply_adds_equal_pytorchs_count_of_the_full_model() -> None:
    """The kernels table's arithmetic, against torch's own FLOP counter on a small DistilBERT."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from benchmarks.kernels import multiply_adds

    config = DistilBertConfig(vocab_size=60, dim=32, hidden_dim=48, n_layers=3, n_heads=2, max_position_embeddings=64)
    config._attn_implementation = "eager"  # the counter does not see inside scaled_dot_product_attention on the CPU
    model = DistilBertForSequenceClassification(config).eval()
    length = 11
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=torch.ones((1, length), dtype=torch.long))
    full = multiply_adds(config.to_dict(), length, cls_only_last_layer=False)
    assert counter.get_total_flops() == 2 * full
    # [CLS] only in the last layer: its query, output projection and feed-forward network for 1 position of 11,
    # attention for 1 query; the key and value projections still read all 11.
    pruned = multiply_adds(config.to_dict(), length, cls_only_last_layer=True)
    saved = (length - 1) * (2 * 32 * 32 + 2 * 32 * 48) + 2 * (length - 1) * length * 32
    assert full - pruned == saved


@pytest.mark.skipif(not (BUNDLED / "pytorch").is_dir(), reason="no bundled model in model_artifacts/")
def test_peers_read_the_tokens_the_handler_reads() -> None:
    # A long review is cut head + tail by the handler (model.json truncation); the peers must read the same
    # tokens, or agreement would measure the cut rather than the engines.
    from app.model import SentimentModel
    from benchmarks.engines import TransformersPT, served_arrays
    from tests.synthetic import reviews

    ours = SentimentModel(BUNDLED, "savedmodel")
    texts, _ = reviews(40, seed=11)
    long = [" ".join(texts[i : i + 20]) for i in range(0, 40, 10)] + ["Lovely kettle."]
    untruncated = [ours.tokenizer.encode(t).ids for t in long]
    ids, mask = served_arrays(untruncated)
    tail = ours.max_length - 2 - ours.head
    assert max(len(x) for x in untruncated) > ours.max_length
    for row, full in enumerate(untruncated):
        expected = full if len(full) <= ours.max_length else [*full[: 1 + ours.head], *full[len(full) - 1 - tail :]]
        assert list(ids[row, : int(mask[row].sum())]) == expected
        assert not ids[row, int(mask[row].sum()) :].any()
    peer = TransformersPT()
    peer.load()
    logits = ours.predict_logits(long)[0]
    assert list(peer.predict(long)) == list((logits.argmax(-1) == ours.labels.index("POSITIVE")).astype(int))


def test_binary_only_artifacts_drop_the_four_way_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       tiny_star_artifacts: Path) -> None:
    """The baseline of the four-way fields' cost: the same files, model.json without ``four_way``."""
    from app.model import SentimentModel
    from benchmarks import engines

    monkeypatch.setattr(engines, "ARTIFACTS", tiny_star_artifacts)
    monkeypatch.setattr(engines, "CACHE", tmp_path)
    target = engines.binary_only_artifacts()
    assert "four_way" not in json.loads((target / "model.json").read_text())
    assert (target / "model.tflite").resolve() == (tiny_star_artifacts / "model.tflite").resolve()
    binary = SentimentModel(target).predict(["Great kettle.", "Broke after a week."])
    full = SentimentModel(tiny_star_artifacts).predict(["Great kettle.", "Broke after a week."])
    assert all(b.sentiment is None and f.sentiment is not None for b, f in zip(binary, full, strict=True))
    assert [(b.label, b.scores) for b in binary] == [(f.label, f.scores) for f in full]
