# The front door. Every target calls a `python -m` entry point that also works on its own.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNS ?= runs
MODEL ?=
comma := ,
MODEL_FLAGS = $(foreach m,$(subst $(comma), ,$(MODEL)),--model $(call quote,$(m)))
# Your own table: make all DATA=file.csv TARGET=column [ARGS="--epochs 50 ..."]
DATA ?=
TARGET ?=
ARGS ?=
# Paths and names reach the command as single words, spaces and glob characters intact ('my data/*.csv');
# `quote` wraps a value in single quotes for the shell (a quote inside it is written '\'').
quote = '$(subst ','\'',$(1))'
TABLE_FLAGS = $(if $(DATA),--data $(call quote,$(DATA)) --target $(call quote,$(TARGET)),) $(ARGS)

.DEFAULT_GOAL := all
REPOSITORY ?= models
HOST ?= 127.0.0.1
PORT ?= 8000
GRPC_PORT ?= 8001
WORKERS ?= 1
# Payload logs: make serve PAYLOAD_LOG=payloads.jsonl [PAYLOAD_SAMPLE=0.1] (make run-image too)
PAYLOAD_LOG ?=
PAYLOAD_SAMPLE ?= 1.0
CSV ?=
OUT ?=
KEEP ?=
# The serving image (deploy/): make image [BASE=...] [VARIANT=batch] [MODELS=models/]; make run-image
IMAGE ?= localhost/tabular-deploy:latest
BASE ?=
VARIANT ?= runtime
MODELS ?=
# podman reads the project's settings (deploy/containers.conf) unless you point it elsewhere.
export CONTAINERS_CONF ?= $(CURDIR)/deploy/containers.conf
.PHONY: install all train export verify serve predict bench test test-gpu fuzz soak mutants lint proto clean \
	base-image image run-image manifests

# Idempotent: the stamp is newer than pyproject.toml once everything is installed.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
	$(PY) -m pip install --quiet -e ".[train,batch,dev]"
	touch $@

all: install
	$(PY) -m export all --runs-dir $(call quote,$(RUNS)) --repository $(call quote,$(REPOSITORY)) $(MODEL_FLAGS) $(TABLE_FLAGS)

train: install
	$(PY) -m pipeline train --runs-dir $(call quote,$(RUNS)) $(MODEL_FLAGS) $(TABLE_FLAGS)

export: install
	$(PY) -m export export --runs-dir $(call quote,$(RUNS)) --repository $(call quote,$(REPOSITORY)) $(MODEL_FLAGS)

verify: install
	$(PY) -m export verify --runs-dir $(call quote,$(RUNS)) --repository $(call quote,$(REPOSITORY)) $(MODEL_FLAGS)

serve: install
	$(PY) -m serve serve --repository $(call quote,$(REPOSITORY)) --host $(HOST) --port $(PORT) --grpc-port $(GRPC_PORT) \
		--workers $(WORKERS) $(if $(PAYLOAD_LOG),--payload-log $(call quote,$(PAYLOAD_LOG)) --payload-sample $(PAYLOAD_SAMPLE),)

# make predict MODEL=auto-mpg DATA=cars.csv [OUT=predictions.csv|.parquet] [KEEP=car_name] (CSV= works too)
predict: install
	@test -n "$(MODEL)" -a -n "$(DATA)$(CSV)" || { echo "usage: make predict MODEL=name DATA=file|dir|'glob' [OUT=out.csv|out.parquet] [KEEP=col,...]" >&2; exit 2; }
	$(PY) -m serve predict --model $(call quote,$(REPOSITORY)/$(MODEL)) --data $(call quote,$(or $(DATA),$(CSV))) \
		$(if $(OUT),--out $(call quote,$(OUT)),) $(if $(KEEP),--keep $(call quote,$(KEEP)),)

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[bench]"
	touch $@

# Ratios measured side by side in one run; all numbers also go to bench-results/results.json.
bench: $(VENV)/.bench-installed
	@test -f $(call quote,$(REPOSITORY)/zoo-multiclass/manifest.json) || $(MAKE) all
	@command -v wrk >/dev/null || echo "wrk not found (apt-get install wrk): HTTP load comes from the built-in asyncio client"
	$(PY) -m bench --repository $(call quote,$(REPOSITORY)) --runs-dir $(call quote,$(RUNS))

# As root, the image tests' podman, runc, debootstrap and base image are installed and built first when
# missing (elsewhere those tests skip, saying why); the tests build the image from the tree itself.
test: install
	$(PY) -m deploy prepare-tests
	$(PY) -m pytest -q

test-gpu: install
	$(PY) -m pytest -q -m cuda

# The reliability checks at full size (make test runs them at a CI-friendly size).
fuzz: install
	FUZZ_EXAMPLES=20000 $(PY) -m pytest -q -s tests/system/test_hostile.py tests/system/test_grpc_hostile.py tests/system/test_faults.py -k "fuzz"

soak: install
	SOAK_SECONDS=60 FAULT_KILLS=20 FLOOD_CONNECTIONS=20000 $(PY) -m pytest -q -s tests/system/test_soak.py tests/system/test_faults.py -k "not fuzz"

# Plants each known bug alone in a temporary copy and checks that its tests fail (README: "Planted bugs").
mutants: install
	$(PY) tests/mutations.py

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

# After editing serve/grpc/proto/*.proto: rebuild the descriptor set the runtime loads (grpc_service.proto and
# the model_config.proto it imports). grpcio-tools is installed here only (<1.77: later releases need
# protobuf 7, tritonclient's generated code protobuf 6).
proto: install
	$(PY) -m pip install --quiet "grpcio-tools>=1.62,<1.77"
	$(PY) -m grpc_tools.protoc -I serve/grpc/proto --include_imports \
		--descriptor_set_out=serve/grpc/proto/grpc_service.pb serve/grpc/proto/grpc_service.proto

# The container image (deploy/Containerfile); these need only python3 and podman, no .venv.
base-image:
	$(PYTHON) -m deploy base-image

image:
	$(PYTHON) -m deploy image --tag $(IMAGE) --variant $(VARIANT) $(if $(BASE),--base $(BASE),) \
		$(if $(MODELS),--models $(MODELS),)

# The image on the host network as `make serve` would bind (HOST, PORT, GRPC_PORT), REPOSITORY read-only
# at /mnt/models (REPOSITORY= with nothing: the models baked into the image).
run-image:
	$(PYTHON) -m deploy run-image --image $(IMAGE) --repository "$(REPOSITORY)" --host $(HOST) \
		--port $(PORT) --grpc-port $(GRPC_PORT) \
		$(if $(PAYLOAD_LOG),--payload-log $(PAYLOAD_LOG) -- --payload-sample $(PAYLOAD_SAMPLE),)

manifests: install
	$(PY) -m deploy validate

clean:
	rm -rf $(RUNS) $(REPOSITORY) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
