# basefactory's entry points. `make demo` and `make test` are the README's two commands:
# each installs what it needs (apt packages as root, the venv), starts the services and runs.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BF := $(VENV)/bin/basefactory
PYTEST_ARGS ?=
# Debian packages the factory needs: the engine (+ classic client that builds with BuildKit),
# the distribution registry, debootstrap for local platforms, git for git-pinned recipes,
# chromium for the catalog's browser test, gcc and binutils for the unit tests' shared objects,
# patch: applies an adopted wheel's declared patches (recipes/index-tts.toml).
# pigz: dockerd gunzips pulled layers with unpigz when it is on PATH (Go's gzip otherwise).
# docker-compose (Compose v1, Debian's): the test that runs examples/compose.
# nginx-light: the external-services tests terminate TLS (and rate-limit) in front of a
# devpi and the token registry with it, as sites run them.
APT_PACKAGES ?= docker.io docker-registry debootstrap git ca-certificates chromium gcc binutils pigz docker-compose patch zstd nginx-light

.PHONY: setup up down demo test test-unit test-cuda cuda tts indextts test-tts llm test-llm vllm-source ngc-standin ngc-cpu ngc mutation bench lint status clean

setup: $(VENV)/.installed
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "setup: apt-get install$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing >/dev/null; \
	  else \
	    echo "basefactory: missing Debian packages:$$missing (as root: apt-get install$$missing)" >&2; exit 1; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	@touch $@

up: setup
	$(BF) up

down:
	@test -x $(BF) && $(BF) down || true

status:
	$(BF) status

# The main job on the embedded default: services, platform, wheels, images, catalog.
demo: setup
	$(BF) up
	$(BF) publish
	$(BF) ls
	$(BF) catalog start

# Unit tests need nothing; integration tests start their own devpi and registry on other
# ports (the session's fixtures) and use the engine that `up` guarantees.
test: setup lint
	$(BF) up
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The CUDA platform from scratch in a factory of its own (fresh devpi and registry): torch
# 2.14.1 + CUDA 13.0 toolkit, torchsort's CUDA kernel for sm_80 and sm_90, cuda-deps.
test-cuda: setup
	$(BF) up
	$(VENV)/bin/python -m pytest tests/cuda $(PYTEST_ARGS)

# The CUDA platform, its wheels and cuda-deps in this factory (and so in its catalog).
CUDA_PLATFORM ?= cu130-py311-torch2.14
cuda: setup
	$(BF) up
	$(BF) publish --platform $(CUDA_PLATFORM) --only torchsort --only cuda-deps

# The TTS platform (torch 2.11.0 + torchaudio 2.11.0 from the index), its wheels, cuda-deps and
# tts-deps with Coqui TTS, whose smoke test synthesizes speech with a VITS model.
TTS_PLATFORM ?= cu130-py311-torch2.11
tts: setup
	$(BF) up
	$(BF) publish --platform $(TTS_PLATFORM) --only monotonic-alignment-search --only coqui-tts --only tts-deps

# Index-TTS on the TTS platform: PyPI's wheel of the official source adopted with its two
# recorded patches, BigVGAN's CUDA kernel compiled ahead of time (sm_80 + sm_90), and
# indextts-deps, whose smoke test runs IndexTTS2's inference on random weights.
indextts: setup
	$(BF) up
	$(BF) publish --platform $(TTS_PLATFORM) --only indextts-bigvgan-kernel --only index-tts --only indextts-deps

# The same from scratch in a factory of its own, plus seed 001's service (examples/
# indextts-service) run FROM the image on a random-weight checkpoint.
test-tts: setup
	$(BF) up
	$(VENV)/bin/python -m pytest tests/tts $(PYTEST_ARGS)

# llm-deps: PyPI's vLLM 0.33.0 wheel adopted onto the CUDA platform's torch (recipes/vllm.toml),
# tested, audited and uploaded, then the image on the platform, in this factory's catalog.
llm: setup
	$(BF) up
	$(BF) publish --platform $(CUDA_PLATFORM) --only vllm --only llm-deps

# The same from scratch in a factory of its own (fresh devpi and registry, CUDA platform).
test-llm: setup
	$(BF) up
	$(VENV)/bin/python -m pytest tests/llm $(PYTEST_ARGS)

# vLLM compiled from its sdist against a CUDA platform's torch (recipes/vllm-source.toml).
# Needs network access to GitHub (its CMake build fetches CUTLASS and FlashAttention):
# on such a host, move "vllm-source" from [wheels] exclude to "vllm" in factory.toml first.
PLATFORM ?= $(CUDA_PLATFORM)
vllm-source: setup
	$(BF) up
	$(BF) wheels build vllm-source --platform $(PLATFORM)

# NVIDIA's PyTorch image as a site mirrors it: here the factory's stand-in (standins/
# ngc-pytorch: system Python, torch relabelled 2.13.0a0+<commit>.nv25.10, PIP_CONSTRAINT),
# pushed to this factory's registry under mirror/nvcr.io/nvidia/pytorch. `make test` runs
# the CPU variant (tests/integration/test_ngc.py); these run it in this factory.
ngc-standin: setup
	$(BF) up
	$(VENV)/bin/python standins/ngc-pytorch/build.py

ngc-cpu: ngc-standin
	$(BF) publish --platform ngc-25.10-cpu --only torchsort --only cuda-deps

# The CUDA variant end to end: torch 2.14.1 (CUDA 13) relabelled 2.14.0a0+<commit>.nv25.10
# with the CUDA toolkit under /usr/local/cuda, torchsort's CUDA kernel compiled against it,
# cuda-deps on it. Heavy (~9 GB base); timed in bench/results.md.
ngc: setup
	$(BF) up
	$(VENV)/bin/python standins/ngc-pytorch/build.py --cuda
	$(BF) publish --platform ngc-25.10 --only torchsort --only cuda-deps

# Mutation testing of the functions that decide a verdict (pyproject's [tool.mutmut]):
# every mutant of them must be killed by a unit test or listed in bench/mutation.md as
# equivalent. Not part of CI (minutes per module on 2 cores). PYTHONPATH puts mutmut's
# copy of the sources (mutants/src) before the editable install's.
MUTATION_JOBS ?= 2
# the guarantees issue 43 found untested: a fit's inputs and pairs, the catalog's reading
# of a fit record, up's registry checks, a Dask round's resource check, a file's records,
# the zstd copy offered, the push's image guard, and the base's pins on its index
# (executor._run_round is not listed: most of its mutants hang the Dask round they break,
# 26 timeouts in one run; its resource check is killed by test_executor, checked by hand)
GUARANTEES = basefactory.images.fit.x_fit_inputs__mutmut* basefactory.images.fit.x_pairs__mutmut* basefactory.catalog.views.x_fit__mutmut* basefactory.daemons.registry_server.x_ensure__mutmut* basefactory.adapters.devpi_api.xǁDevpiClientǁindex_wheels__mutmut* basefactory.catalog.snapshot.xǁReaderǁ_zstd__mutmut* basefactory.images.upload.x_push__mutmut* basefactory.index.base_pins.* basefactory.proofs.read.xǁProofReaderǁwheel__mutmut* basefactory.proofs.model.xǁSubjectǁof_file__mutmut*
MUTANTS ?= basefactory.images.fit.x_verdict* basefactory.images.fit.x__broken_rule* basefactory.images.fit.x__refused_by_resolution* basefactory.audit.allow.* basefactory.audit.abi.xǁAbiReportǁ* basefactory.audit.abi.x_require_clean* basefactory.proofs.read.x_proven* basefactory.proofs.read.x_first* basefactory.audit.abi_script.x_static_check* basefactory.audit.abi_script.x_search_paths* basefactory.audit.abi_script.x_verdict* basefactory.audit.abi_script.x_classify* basefactory.audit.abi_script.x_relative* basefactory.audit.abi_script.x_top_package* basefactory.audit.abi_script.x_vendored_sibling* basefactory.wheels.torch_state.* basefactory.images.push.x_publish__mutmut_* basefactory.images.push.x_finish__mutmut_* basefactory.images.push.x__move__mutmut_* basefactory.images.plan.x_decide* basefactory.wheels.publish.x_decide* basefactory.adapters.registry_auth.* basefactory.refs.x_factory_ref* $(GUARANTEES)
mutation: $(VENV)/.installed
	$(VENV)/bin/python -m pip install -q "mutmut==3.8.1"
	rm -rf mutants
	PYTHONPATH=src $(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS) || true
	$(VENV)/bin/mutmut results --all true 2>/dev/null | grep -E "$$(echo $(MUTANTS) | sed 's/\*/.*/g; s/ /|/g')" > bench/mutation-results.txt || true
	@echo "mutants: $$(wc -l < bench/mutation-results.txt), killed: $$(grep -c ': killed' bench/mutation-results.txt)"
	@grep -v ": killed" bench/mutation-results.txt || true

# the unit tier without its one slow file (the config fuzzing, ~1 min): `make test` runs it
test-unit: setup
	$(VENV)/bin/python -m pytest tests/unit -m "not slow" $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

# wrk is the catalog benchmark's load generator.
bench: setup
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; } || { echo "basefactory: the catalog benchmark needs wrk (apt-get install wrk)" >&2; exit 1; }
	$(BF) up
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

clean: down
	rm -rf .factory wheels/*/ tests/artifacts bench/work
