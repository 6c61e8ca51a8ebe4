# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= .data
HOST ?= 127.0.0.1
PORT ?= 8000
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install browser hsm nginx postgres run run-federation test lint typecheck pytest bench bench-city fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,speed]'
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the Playwright tests; never a downloaded browser.
browser:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian chromium (needs root and apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk fonts-noto-core) >/dev/null; }
	@test -x /usr/bin/chromium

# Debian's SoftHSM2: a PKCS#11 token for the HSM tests (the tests make their own tokens).
hsm:
	@test -e /usr/lib/softhsm/libsofthsm2.so || { \
	  echo "installing Debian softhsm2 (needs root and apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2) >/dev/null; }
	@test -e /usr/lib/softhsm/libsofthsm2.so

# Debian's nginx: a real static server for the mirror tests (run as the current user with
# a generated config on a free port; never as a system service).
nginx:
	@test -x /usr/sbin/nginx || { \
	  echo "installing Debian nginx-light (needs root and apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light) >/dev/null; }
	@test -x /usr/sbin/nginx

# The tests need the PostgreSQL on 127.0.0.1:5432; start it if the machine has it stopped.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start 2>/dev/null; sleep 2; }
	@pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is required on 127.0.0.1:5432"; exit 1; }

run: install
	$(BIN)/python -m cardsvc.demo --data-dir $(DATA) --host $(HOST) --port $(PORT)

# Two cities (Yiwu, Hangzhou) under one national root, on SQLite: ports PORT_FED (Yiwu),
# +1 (Hangzhou), +2 (the national publication). Ctrl-C stops all.
FED_DATA ?= .data-federation
PORT_FED ?= 8100
run-federation: install
	$(BIN)/python -m cardsvc.demo_federation --data-dir $(FED_DATA) --host $(HOST) --port $(PORT_FED)

lint: install
	$(BIN)/ruff check schemas keys verifier wallet_sim cardsvc tests bench tools

typecheck: install
	$(BIN)/mypy

# Two workers: the machine has two cores, and the suite is mostly waiting on servers.
pytest: install browser hsm nginx postgres
	$(BIN)/pytest -q -p no:cacheprovider -n 2

test: lint typecheck pytest

bench: install postgres
	$(BIN)/python -m bench

# Issues a whole city's 24,591 cards on SQLite and PostgreSQL (about 15 minutes).
bench-city: install postgres
	$(BIN)/python -m bench city

fuzz: install
	FMC_FUZZ_EXAMPLES=$${FMC_FUZZ_EXAMPLES:-20000} $(BIN)/pytest -q -p no:cacheprovider tests -m fuzz

clean:
	rm -rf $(VENV) $(DATA) $(FED_DATA) .mypy_cache .ruff_cache .pytest_cache
