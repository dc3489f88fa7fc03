# MChat: `make up` runs the whole system on this machine, `make test` runs the suite.
# Both install what is missing first (Debian packages when root, the virtualenv, the plugin).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-stamp
# libssl-dev: the plugin's login guard verifies password hashes with libcrypto
SYSTEM_PACKAGES := mosquitto mosquitto-dev mosquitto-clients gcc make libssl-dev
# fonts-wqy-microhei: Chinese glyphs in the browser test's screenshots
# redis-server: the Celery test's broker (the test starts its own)
TEST_SYSTEM_PACKAGES := $(SYSTEM_PACKAGES) redis-server chromium fonts-wqy-microhei tmux

.PHONY: up test test-pg bench system-deps test-system-deps venv plugin static migrate lint clean web web-test bench-web

up: system-deps venv plugin web static
	$(PY) manage.py runstack

test: test-system-deps venv plugin web static
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The suite against a throwaway PostgreSQL cluster, as CI runs it.
test-pg: test-system-deps venv plugin web static
	.ci/with-services $(VENV)/bin/pytest $(PYTEST_ARGS)

# The benchmark on a private stack it starts itself; writes bench/REPORT.md and bench/latest.json.
# BENCH_ARGS="--postgres" for PostgreSQL, "--quick" for a short run (python -m bench.run --help).
bench: system-deps venv plugin
	@.ci/ensure-packages postgresql
	$(PY) -m bench.run $(BENCH_ARGS)

# The benchmark back to back with the peer chat server's harness (ejabberd; bench/peer.py).
.PHONY: bench-peer
bench-peer: system-deps venv plugin
	@.ci/ensure-packages postgresql
	$(PY) -m bench.run --postgres --peer ejabberd $(BENCH_ARGS)

# Good logins/s while a guesser hammers one account (the plugin's login guard); a few seconds.
.PHONY: bench-login
bench-login: system-deps venv plugin
	$(PY) -m bench.login_guard $(BENCH_ARGS)

# The audit log's cost on group.member_add and msg.send_private, on a private PostgreSQL
# cluster (BENCH_ARGS="--sqlite" without one); writes bench/AUDIT.md.
.PHONY: bench-audit
bench-audit: venv
	@.ci/ensure-packages postgresql
	$(PY) -m bench.audit_cost $(BENCH_ARGS)
# Capacity of one broker (bench/CAPACITY.md): 50,000 MQTT connections, logins/s, a reconnect
# storm after a restart. Heavy: run it alone. BENCH_ARGS="--quick" for 2,000 connections.
.PHONY: bench-capacity
bench-capacity: system-deps venv plugin
	$(PY) -m bench.capacity $(BENCH_ARGS)

system-deps:
	@.ci/ensure-packages $(SYSTEM_PACKAGES)

test-system-deps:
	@.ci/ensure-packages $(TEST_SYSTEM_PACKAGES)

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

plugin:
	$(MAKE) -s -C broker

# The browser client (web/): Node.js from Debian when missing, `npm ci` when the lockfile is newer
# than node_modules, the Vite build into web/dist (served at /static/web/), the gzipped JS size.
web:
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || .ci/ensure-packages nodejs npm
	@if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules ]; then \
		cd web && npm ci --no-audit --no-fund && touch node_modules; fi
	cd web && npm run -s build && npm run -s build:lib && node scripts/report-size.mjs

# The client library's unit tests (Vitest, offline).
web-test: web
	cd web && npm test --silent

# Hashed, compressed static files under var/static (STATIC_ROOT), served by WhiteNoise.
static: venv web
	$(PY) manage.py collectstatic --noinput --verbosity 0

# The web client's bench (Enter -> shown in another browser, first load, bundle): bench/web/REPORT.md
bench-web: test-system-deps venv plugin web static
	$(VENV)/bin/pytest bench/web_bench.py -q -s --tb=short

migrate: venv
	$(PY) manage.py migrate --noinput

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	$(MAKE) -C broker clean
	rm -rf $(VENV)
