# cellbatch — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
OUT    ?= demo-out

.PHONY: demo test test-fast wheel-check lint bench venv clean tools

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/cellbatch demo --out $(OUT) --db $(OUT)/demo.sqlite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_rooms.py

# Command-line tools some tests drive (mbpoll: an independent Modbus client; pdftotext:
# reading the PDF back; sqlite3: the README's tamper example; tmux: the HMI in a real
# terminal). Installed when missing and possible (root + apt-get); the tests that need
# them skip with the reason otherwise.
tools:
	@missing=""; for t in mbpoll pdftotext sqlite3 tmux; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing test tools:$$missing (apt-get, best effort)"; \
	  (timeout 90 apt-get update -qq && timeout 90 apt-get install -y -qq --no-install-recommends \
	    mbpoll poppler-utils sqlite3 tmux) >/dev/null 2>&1 || echo "could not install$$missing; those tests skip"; \
	fi

# Everything: lint, the wheel check, then every test (unit, room, slow and e2e).
test: lint tools wheel-check
	$(BIN)/python -m pytest -q

# Unit and room tests only (no `slow`, no `e2e` marks; tests/test_rooms.py included).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not e2e"

# The wheel, installed without dev extras into a fresh venv, runs from outside the checkout.
wheel-check: $(STAMP)
	.ci/wheel-check $(PYTHON)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
