# OCAD: one virtual environment at .venv, every install pinned through constraints.txt.
# make demo  - install ocad-core + ocad-detectors-ml (no torch, no sklearn) and run `ocad demo`
# make test  - install all three packages, the example plugin and test tools, run every test
#              (as root with apt-get it also installs Debian's prometheus-alertmanager and prometheus,
#              which tests/integration runs on 127.0.0.1; without them those tests skip)
# make models - retrain the shipped default artifacts from the committed config
# make bench-compare - one-run comparison table (benchmarks/results/compare.json)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
EDITABLE := --config-settings editable_mode=compat
CORE := packages/ocad-core
ML := packages/ocad-detectors-ml
TRAIN := packages/ocad-train
EXAMPLE := examples/ocad-plugin-example
PYTEST_ARGS ?=

.PHONY: demo test noc-servers models bench-compare asv-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip "setuptools>=68" wheel

$(VENV)/.demo-installed: $(BIN)/python constraints.txt $(CORE)/pyproject.toml $(ML)/pyproject.toml
	$(PIP) $(EDITABLE) -e $(CORE) -e $(ML)
	touch $@

$(VENV)/.all-installed: $(VENV)/.demo-installed $(TRAIN)/pyproject.toml $(EXAMPLE)/pyproject.toml
	$(PIP) $(EDITABLE) -e "$(CORE)[io,report,test,spark,alertmanager,prometheus]" -e $(ML) -e "$(TRAIN)[tune]" -e $(EXAMPLE) "asv>=0.6.4"
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/ocad demo

test: $(VENV)/.all-installed noc-servers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

noc-servers:
	@.ci/install-noc-servers

models: $(VENV)/.all-installed
	$(BIN)/python -m ocad.train.build_defaults --config $(TRAIN)/configs/default.toml --dest $(ML)/src/ocad/detectors_ml/models
	OCAD_PLUGINS_AUTOLOAD=0 $(BIN)/ocad calibrate --out $(CORE)/src/ocad/core/data/calibration.json

bench-compare: $(VENV)/.all-installed
	$(BIN)/python benchmarks/compare.py --out benchmarks/results/compare.json

# CI: every asv suite imports and is well-formed, and one quick benchmark runs (the whole stack,
# one endpoint). BENCH=<regex> runs others, e.g. make asv-quick BENCH=DetectorSuite
ASV_BENCH ?= ^bench_monitor.TickSuite.time_observe_tick\(1\)$$
asv-quick: $(VENV)/.all-installed
	cd benchmarks && ../$(BIN)/asv check --python=same \
	  && ../$(BIN)/asv machine --yes >/dev/null \
	  && ../$(BIN)/asv run --python=same --quick --show-stderr --bench '$(or $(BENCH),$(ASV_BENCH))'

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis benchmarks/.asv
