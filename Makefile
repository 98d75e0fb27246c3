# tradelab: `make demo` sets everything up and runs the main job; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test chaos soak install lab bench clean chromium

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "tradelab needs Python 3.11, got " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tradelab ingest sample
	$(BIN)/tradelab lake info
	$(BIN)/tradelab lake query "select symbol, count(*) as bars, strftime(min(ts), '%Y-%m-%d') as first, strftime(max(ts), '%Y-%m-%d') as last from bars where timeframe='1Day' group by symbol order by symbol"
	$(BIN)/tradelab nightly -p 'symbols=["AAPL","GOOG"]' -p 'pairs=["MSFT/IBM"]' -p lookback=null
	$(BIN)/tradelab params show
	$(BIN)/tradelab parity --candidates
	@echo "see it: $(BIN)/tradelab dashboard --replay latest   (then open http://127.0.0.1:8050/)"

# Two test processes, one per core (pytest-xdist); all tests of a file run in the same one.
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --ignore=tests/chaos --ignore=tests/soak

# Crashes, broker and data faults, fuzzed input, secrets (tests/chaos): at most 10 minutes.
chaos: $(STAMP)
	$(BIN)/python -m pytest -q tests/chaos

# Unattended days (tests/soak): tradelab live + tradelab evening over 22 simulated sessions.
soak: $(STAMP)
	$(BIN)/python -m pytest -q tests/soak

# The report tests open pages in headless Chromium; CI starts from a clean Debian machine.
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=; [ "$$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

bench: $(STAMP)
	$(BIN)/python bench/lake.py
	$(BIN)/python bench/signals.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/pairs.py
	$(BIN)/python bench/rotation.py
	$(BIN)/python bench/live.py
	$(BIN)/python bench/live.py --symbols 250 --strategies 2 --sender process --sleeves 0
	$(BIN)/python bench/evening.py

clean:
	rm -rf $(VENV) lake .pytest_cache
