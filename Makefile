# cellbatch — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
OUT    ?= demo-out

.PHONY: demo test lint bench venv clean tools

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
# reading the PDF back; tmux: the HMI in a real terminal). Installed when missing and
# possible (root + apt-get); the tests that need them skip with the reason otherwise.
tools:
	@missing=""; for t in mbpoll pdftotext tmux; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing test tools:$$missing (apt-get, best effort)"; \
	  (timeout 90 apt-get update -qq && timeout 90 apt-get install -y -qq --no-install-recommends \
	    mbpoll poppler-utils tmux) >/dev/null 2>&1 || echo "could not install$$missing; those tests skip"; \
	fi

test: lint tools
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
