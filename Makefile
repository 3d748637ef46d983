# BrainLoc: two commands do all the set-up on a fresh Debian machine with Python 3.11.
#   make run   - create .venv if missing, install requirements.txt, start the app
#   make test  - create .venv if missing, install requirements-dev.txt (+ chromium,
#                poppler-utils, nginx and postgresql from apt when missing), lint, then run
#                the whole test suite
# Installs are keyed on a hash of the requirements files (a stamp file inside .venv), so a
# second run with unchanged requirements installs nothing.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip --disable-pip-version-check
RUN_HASH := $(shell cat requirements.txt | sha256sum | cut -c1-16)
DEV_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
RUN_STAMP := $(VENV)/.installed-run-$(RUN_HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(DEV_HASH)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint install install-dev system-deps

run: $(RUN_STAMP)
	$(VENV)/bin/streamlit run app.py

test: $(DEV_STAMP) system-deps lint
	$(VPY) -m pytest

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

# Debian ships venv's pip bootstrap (ensurepip) in python3-venv, which a fresh machine may lack.
$(VPY):
	@if ! $(PYTHON) -c "import ensurepip" >/dev/null 2>&1; then \
		echo "Installing python3-venv with apt-get (Python's venv needs it on Debian)"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			python3-venv; \
	fi
	$(PYTHON) -m venv $(VENV)

# Order-only prerequisites: the stamp's name holds the requirements' hash, so a checkout that
# only touches the files' dates installs nothing.
$(RUN_STAMP): | $(VPY)
	$(PIP) install -r requirements.txt
	rm -f $(VENV)/.installed-run-*
	touch $@

# The dev requirements include the runtime ones (-r requirements.txt).
$(DEV_STAMP): | $(VPY)
	$(PIP) install -r requirements-dev.txt
	rm -f $(VENV)/.installed-dev-* $(VENV)/.installed-run-*
	touch $@ $(RUN_STAMP)

# The browser tests drive Debian's chromium (never a downloaded browser); the report
# tests render PDFs with poppler's pdftoppm; the reverse-proxy test runs the shipped nginx
# configuration with Debian's nginx; the database tests run on SQLite and on a private
# PostgreSQL server started from Debian's postgresql programs (tests/databases.py). nginx and
# postgresql are installed only when missing, and the service each package starts is stopped
# and disabled again: the tests run servers of their own.
system-deps:
	@if [ ! -x /usr/bin/chromium ] || ! command -v pdftoppm >/dev/null 2>&1; then \
		echo "Installing chromium and poppler-utils with apt-get"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			chromium poppler-utils; \
	fi
	@if [ ! -x /usr/sbin/nginx ]; then $(call apt_service,nginx,the reverse-proxy test); fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && \
		! command -v initdb >/dev/null 2>&1; then \
		$(call apt_service,postgresql,the database tests: they run on it too); \
	fi

# $(call apt_service,PACKAGE,WHY): install PACKAGE with apt-get, then stop and disable the
# service the package starts where systemd runs (the tests start servers of their own).
apt_service = echo "Installing $(1) with apt-get (for $(2); its service is disabled)"; \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(1) && \
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
		$(SUDO) systemctl disable --now $(1); \
	fi
