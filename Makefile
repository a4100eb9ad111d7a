# OCAD: two virtual environments, every install pinned through constraints.txt.
#   .venv-demo  ocad-core + ocad-detectors-ml only: what a user installs (never the example plugin)
#   .venv       everything: the three packages, the example plugin, test and benchmark tools
# make demo  - install ocad-core + ocad-detectors-ml into .venv-demo (no torch, no sklearn) and run `ocad demo`
# make test  - install everything into .venv, run every test, then build the three wheels and run
#              ocad-core's README example in a fresh venv with ocad-core[ml] from them (package-check)
#              (as root with apt-get it also installs Debian's prometheus-alertmanager and prometheus,
#              which tests/integration runs on 127.0.0.1; without them those tests skip)
# make models - retrain the shipped default artifacts from the committed config
# make bench-compare - one-run comparison table (benchmarks/results/compare.json)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO_VENV := .venv-demo
DEMO_BIN := $(DEMO_VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
DEMO_PIP := $(DEMO_BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
EDITABLE := --config-settings editable_mode=compat
CORE := packages/ocad-core
ML := packages/ocad-detectors-ml
TRAIN := packages/ocad-train
EXAMPLE := examples/ocad-plugin-example
PYTEST_ARGS ?=

.PHONY: demo test noc-servers package-check models bench-compare asv-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip "setuptools>=77" wheel

$(DEMO_BIN)/python:
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip "setuptools>=77" wheel

# The demo venv holds what `pip install "ocad-core[ml]"` gives a user, and nothing else: the
# example plugin (a toy PTP detector, installed for the tests) would show up in every command.
$(DEMO_VENV)/.demo-installed: $(DEMO_BIN)/python constraints.txt $(CORE)/pyproject.toml $(ML)/pyproject.toml
	$(DEMO_PIP) $(EDITABLE) -e $(CORE) -e $(ML)
	touch $@

$(VENV)/.all-installed: $(BIN)/python constraints.txt $(CORE)/pyproject.toml $(ML)/pyproject.toml $(TRAIN)/pyproject.toml $(EXAMPLE)/pyproject.toml
	$(PIP) $(EDITABLE) -e "$(CORE)[io,report,test,spark,alertmanager,prometheus]" -e $(ML) -e "$(TRAIN)[tune]" -e $(EXAMPLE) "asv>=0.6.4"
	touch $@

demo: $(DEMO_VENV)/.demo-installed
	$(DEMO_BIN)/ocad demo

test: $(VENV)/.all-installed noc-servers
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) package-check

# sdists + wheels of the three packages (LICENSE, SPDX license, pins, no setuptools warnings), then
# ocad-core[ml] from the wheels in a fresh temporary venv running ocad-core's README example (~1 min).
package-check: $(VENV)/.all-installed
	$(BIN)/python tools/check_packages.py

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
	rm -rf $(VENV) $(DEMO_VENV) .pytest_cache .hypothesis benchmarks/.asv
