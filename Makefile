# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench soak fuzz clean system-deps

$(STAMP): pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet uv || \
		$(PYTHON) -m pip install --quiet --user --break-system-packages uv
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	@# Bytecode compiled at install, as pip does: a CLI run then starts in ~0.2 s instead
	@# of ~0.6 s of compiling (more where PYTHONDONTWRITEBYTECODE is set).
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[all]' --group dev
	@# The shipped GeoIP default (country-level DB-IP data, Apache-2.0). Its metadata pins an
	@# old maxminddb that geoip2 5 cannot use; geo/ only reads its .mmdb file, so no deps.
	$(UV) pip install --quiet --python $(BIN)/python --no-deps 'python-geoacumen>=2024.6'
	@# The project itself is installed editable: compile it too (stale files just recompile).
	$(BIN)/python -m compileall -q -j 0 webseed peer geo patches bench >/dev/null
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m webseed.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check webseed peer geo patches
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian tools the tests drive for real (curl, aria2c, nginx, ...); installs only what is missing.
system-deps:
	@bash .ci/system-deps.sh

unit: $(STAMP) system-deps
	rm -f .coverage .coverage.*
	$(BIN)/python -m pytest --cov --cov-report= -p no:cacheprovider $(PYTEST_ARGS)
	$(BIN)/coverage combine --quiet || true
	$(BIN)/python .ci/covgate.py

test: lint typecheck unit

bench: $(STAMP) system-deps
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache

# Coverage-guided fuzzing (atheris; falls back to longer hypothesis runs without it).
FUZZ_SECONDS ?= 30
fuzz: $(STAMP)
	@$(BIN)/python -c "import atheris" 2>/dev/null || \
		$(UV) pip install --quiet --python $(BIN)/python atheris || \
		echo "fuzz: atheris not installable here; using hypothesis instead" >&2
	$(BIN)/python -m fuzz.run_all --seconds $(FUZZ_SECONDS)

# Long reliability runs: load vs nginx, kill -9 / fault runs, fuzzing; figures to bench/results/
# and docs/reliability.md.
soak: $(STAMP) system-deps
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
