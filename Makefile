# The two commands of the README:  make demo   and   make test
PY      ?= python3.11
VENV    ?= .venv
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed
DAYS    ?= 90
# Debian packages the product needs: PostgreSQL (store tests, production), Mosquitto (MQTT broker; the demo
# falls back to an embedded broker without it), Chromium (the portal's browser tests and benchmark) and a
# Chinese font (pages and PDF statements render Chinese text), Pango (WeasyPrint's text layout) and poppler-utils
# (pdftotext/pdftoppm: the statement tests read PDFs back).
APT_PKGS = postgresql mosquitto chromium fonts-wqy-zenhei poppler-utils libpango-1.0-0 libpangoft2-1.0-0 nginx

.PHONY: demo test bench setup system-deps clean security

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# Installs missing Debian packages when run as root (as on the park server and in CI); otherwise says what to install.
system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "please install the Debian packages:$$missing (sudo apt-get install$$missing)"; fi; \
	fi

demo: system-deps $(STAMP)
	$(BIN)/anning demo --days $(DAYS) $(DEMO_ARGS)

# Static security check (ruff's bandit rules) and dependency audit (pip-audit) against the baselines in security/;
# fails on a new finding. Runs first in `make test`, so in CI. security/README.md.
security: $(STAMP)
	BIN=$(BIN) scripts/security-check.sh

test: system-deps $(STAMP) security
	scripts/with-postgres.sh $(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

bench: system-deps $(STAMP)
	scripts/with-postgres.sh sh -c '$(BIN)/python bench/store.py && $(BIN)/python bench/ingest.py && $(BIN)/python bench/forecast.py && $(BIN)/python bench/dispatch.py && $(BIN)/python bench/alarms.py && $(BIN)/python bench/reports.py && $(BIN)/python bench/scenario.py && $(BIN)/python bench/portal.py' 

clean:
	rm -rf $(VENV) var build *.egg-info
