# Two commands set everything up on a fresh Debian machine with Python >= 3.11:
#   make demo   - system packages + .venv, then render the shipped conversation to out/demo.mp4
#   make test   - the same plus test dependencies, then the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SYSTEM_PACKAGES := espeak-ng libespeak-ng1
TEST_SYSTEM_PACKAGES := chromium codec2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test system-deps test-system-deps install serve bench lint clean

system-deps:
	@if ! ldconfig -p | grep -q 'libespeak-ng.so.1'; then \
	  echo "installing system packages: $(SYSTEM_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(SYSTEM_PACKAGES); \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

install: system-deps $(VENV)/.installed

demo: install
	$(VENV)/bin/anima demo -o out/demo.mp4 --report out/demo.json

test-system-deps: system-deps
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v c2enc >/dev/null 2>&1; then \
	  echo "installing system packages for the tests (browser, codec2): $(TEST_SYSTEM_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(TEST_SYSTEM_PACKAGES); \
	fi

test: test-system-deps $(VENV)/.installed-test
	$(PY) -m pytest -q

serve: install
	$(VENV)/bin/anima serve

bench: install
	$(PY) benchmarks/pipeline.py

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

clean:
	rm -rf out .pytest_cache
