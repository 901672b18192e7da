# The README's commands. Everything installs itself: a fresh machine needs only Python 3.11+,
# Node.js with npm, and root or PostgreSQL already installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= 2

.PHONY: demo demo-cli test lint check-types pytest bench deps postgres node-tools checkov clean crds

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

deps: $(VENV)/.installed

postgres:
	@scripts/ensure-postgres.sh

tools/node/node_modules/.installed: tools/node/package.json tools/node/package-lock.json
	# npm install, not npm ci: npm 11 leaves other platforms' optional dbmate binaries out of
	# the lock file and then refuses `npm ci`; install still honours the locked versions.
	cd tools/node && npm install --no-audit --no-fund --loglevel=error
	touch $@

node-tools: tools/node/node_modules/.installed

# checkov (the chart's and Dockerfile's security scan in tests/chart) has many pinned
# dependencies of its own: it gets a virtualenv of its own.
tools/checkov/.installed: tools/checkov/requirements.txt
	$(PYTHON) -m venv tools/checkov/venv
	tools/checkov/venv/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

checkov: tools/checkov/.installed

lint: deps
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: deps postgres node-tools checkov
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: lint pytest

# The CRD is generated from the operator's pydantic models; tests/operator/test_crd.py fails when
# the committed file is stale.
crds: deps
	mkdir -p crds
	$(BIN)/python -m stagecraft.operator.crd > crds/databasemigrations.stagecraft.dev.yaml
	cp crds/databasemigrations.stagecraft.dev.yaml charts/stagecraft/crds/

# The gate on an emulated cluster with the real operator (examples/cluster_demo.py); demo-cli is
# the CLI's own story on SQLite (examples/demo.sh).
demo: deps
	$(BIN)/python examples/cluster_demo.py

demo-cli: deps
	examples/demo.sh

bench: deps postgres node-tools
	$(BIN)/python bench/bench_raw.py
	$(BIN)/python bench/bench_drizzle.py
	$(BIN)/python bench/bench_prisma.py
	$(BIN)/python bench/bench_knex.py
	$(BIN)/python bench/bench_operator.py
	$(BIN)/python bench/bench_rollout.py

clean:
	rm -rf $(VENV) tools/node/node_modules tools/checkov/venv tools/checkov/.installed .mypy_cache .ruff_cache .pytest_cache .hypothesis
