# The two commands a newcomer runs:  `make demo`  and  `make test`.
# Each creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := tests/interop/node_modules/.installed-stamp

.PHONY: demo test lint bench install node browser janus clean

# The compiled hot loop (framecrypt._native, built by setup.py from workers/csrc) needs
# libssl-dev and, on x86-64, libipsec-mb-dev: installed with apt where missing. CI
# (CI=true) requires the extension to build; elsewhere a failed build leaves the
# pure-Python core running (framecrypt.native_info() says why).
NATIVE_SRC := setup.py $(wildcard workers/csrc/*)
REQUIRE_NATIVE := $(if $(filter true,$(CI)),1,0)

$(STAMP): pyproject.toml $(NATIVE_SRC)
	@.ci/install-native-deps || echo "native build dependencies missing: the pure-Python core will run"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	FRAMECRYPT_REQUIRE_NATIVE=$(REQUIRE_NATIVE) $(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(STAMP)

# The livekit-client npm build the interop tests run against (pinned in package-lock.json).
$(NODE_STAMP): tests/interop/package.json tests/interop/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/interop && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed-stamp; \
	else echo "npm not found: livekit-client interop tests will be skipped"; fi

node: $(NODE_STAMP)

# Headless Chromium (Debian package) for the real-browser test; without root or apt it
# is skipped locally with a reason (CI runs as root and never skips it).
browser:
	@.ci/install-chromium || echo "chromium not installed: the browser test will be skipped"

# Janus 1.1 (Debian `janus`, `janus-tools`) for the tests with a real SFU; without root or
# apt they are skipped locally with a reason (CI runs as root and never skips them).
janus:
	@.ci/install-janus || echo "janus not installed: the Janus tests will be skipped"

demo: $(STAMP)
	$(BIN)/framecrypt demo

lint: $(STAMP)
	$(BIN)/ruff check .
	MYPY=$(BIN)/mypy .ci/typecheck

# The suite on the native path, again on the pure-Python core (FRAMECRYPT_NATIVE=0, the
# fallback), then the differential and malformed-input tests against an ASan/UBSan
# build of the extension (.ci/sanitize), and a short libFuzzer run of its C parsers
# (.ci/fuzz smoke: ~1 min; installs clang where missing).
test: $(STAMP) node browser janus lint
	$(BIN)/pytest
	FRAMECRYPT_NATIVE=0 $(BIN)/pytest -q -p no:cacheprovider
	PY=$(BIN)/python .ci/sanitize
	.ci/fuzz smoke

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/framecrypt bench

clean:
	rm -rf $(VENV) tests/interop/node_modules build *.egg-info
