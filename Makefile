# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Unpacked by `make bench` (see below).
NGINX := .bench/nginx/usr/sbin/nginx
PACKAGES := app domain eventstore projections reactors scim migrations conformance

.PHONY: install run test test-ha lint clean chromium screenshots conformance fuzz bench bench-groups bench-webhooks bench-reactors bench-replay bench-large-bodies bench-tenant-fairness bench-fold bench-audit-memory bench-http-edge bench-access bench-feed bench-console bench-console-timeline bench-failover bench-two-workers bench-personal-data

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/scimledger migrate
	@echo "Serving on http://$${HOST:-127.0.0.1}:$${PORT:-8000}/scim/v2"
	@echo "Get a token in another terminal:"
	@echo "  $(BIN)/scimledger org create 'Acme'    # prints the org id"
	@echo "  $(BIN)/scimledger token issue --org 'Acme'"
	SCIMLEDGER_LOG_FORMAT=$${SCIMLEDGER_LOG_FORMAT:-text} $(BIN)/scimledger serve

test: install chromium
	$(BIN)/pytest

# The README's pictures of the console (docs/console/*.png), from a demonstration organization.
screenshots: install chromium
	$(BIN)/python -m tests.browser.screenshots
# PostgreSQL failing over under SCIM write load, with pg_auto_failover from Debian's packages (tests/ha/,
# not part of `make test`): a monitor, a primary and a synchronous standby on loopback, run as the postgres
# user. About a minute. SCIMLEDGER_HA_RESULTS=path appends each run's figures there.
HA_PACKAGES := /usr/bin/pg_autoctl /usr/share/postgresql/15/extension/pgautofailover.control

test-ha: install $(HA_PACKAGES)
	$(BIN)/pytest tests/ha

$(HA_PACKAGES):
	apt-get update -qq
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq postgresql-15-auto-failover pg-auto-failover-cli

# The console's browser tests drive Debian's Chromium through Playwright (never a browser Playwright downloads).
CHROMIUM := /usr/bin/chromium
chromium: $(CHROMIUM)

$(CHROMIUM):
	apt-get update -qq
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium fonts-dejavu-core fonts-liberation

lint: install
	$(BIN)/ruff check $(PACKAGES) tests bench
	$(BIN)/ruff format --check $(PACKAGES) tests bench
	$(BIN)/mypy

# The Schemathesis and Hypothesis tests of `make test`, with 1,000 cases per operation and property.
fuzz: install
	SCIMLEDGER_FUZZ_EXAMPLES=$${SCIMLEDGER_FUZZ_EXAMPLES:-1000} $(BIN)/pytest tests/e2e/test_fuzz.py tests/unit/test_properties.py

# Okta's and Microsoft's SCIM test suites and scim2-tester against a fresh server, with counts and every failure
# (see conformance/RESULTS.md). Not part of `make test`. newman (npm) and scim2-tester (PyPI) are installed under
# .conformance/ when missing, never globally.
NEWMAN := .conformance/node_modules/.bin/newman
SCIM2_TESTER := .conformance/venv/bin/scim2

conformance: install $(NEWMAN) $(SCIM2_TESTER)
	$(BIN)/python -m conformance.run

$(NEWMAN):
	mkdir -p .conformance
	npm install --prefix .conformance --no-audit --no-fund --silent 'newman@6'

$(SCIM2_TESTER):
	$(PYTHON) -m venv .conformance/venv
	.conformance/venv/bin/pip install --quiet 'scim2-tester>=0.5,<0.6' 'scim2-cli>=0.6,<0.7'

clean:
	rm -rf $(VENV) .bench .conformance .pytest_cache .mypy_cache .ruff_cache

# Benchmarks are measured, never asserted in tests: this one is issue 3's scale claim.
bench-groups: install
	$(BIN)/python bench/group_membership.py

# Every path users wait on, against the stack's ceilings and a peer, in one bounded run (about 6 minutes),
# then the host app's access check against the indexed SELECT baseline, in turns of its own (about 2 minutes),
# the event feed catching up on 1,000,000 events against the bare log read, webhook delivery lag and the
# group PATCH with an endpoint active against none (a few minutes each), and the console's access timeline of a
# group of 10,000 members over a year (about a minute and a half).
# Not part of `make test`. wrk comes from Debian's packages; traffic stays on 127.0.0.1.
bench: install $(NGINX)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/load/run.py
	$(BIN)/python bench/access_check.py
	$(BIN)/python bench/event_feed.py
	$(BIN)/python bench/webhook_lag.py
	$(BIN)/python bench/console_pages.py
	$(BIN)/python bench/console_timeline.py

# The two-worker rows of `make bench` alone (POST /Users and GET filter under `serve --workers 2`, in turns with
# the bare app under `uvicorn --workers 2`), written to bench/results/two_workers.json. About 6 minutes.
bench-two-workers: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/load/run.py --two-workers

# nginx serves the trivial endpoint that shows wrk is not the bottleneck. Unpacked from Debian's package
# rather than installed, so that no system service starts on port 80.
$(NGINX):
	mkdir -p .bench
	cd .bench && (apt-get download nginx 2>/dev/null || (apt-get update -qq && apt-get download nginx))
	dpkg-deb -x .bench/nginx_*.deb .bench/nginx
	rm .bench/nginx_*.deb

# Issue 4's figure: reactor lag from an Okta deactivation to the memberships being gone.
# The access check against one bare indexed SELECT, in turns (bench/access_check.py).
bench-access: install
	$(BIN)/python bench/access_check.py

bench-reactors: install
	$(BIN)/python bench/reactor_lag.py

# Issue 21's webhook figures: delivery lag from commit to the receiver's 2xx under POST /Users (paced and burst),
# and group PATCH throughput with one endpoint active against none, in turns. About a minute.
bench-webhooks: install
	$(BIN)/python bench/webhook_lag.py

# Issue 5's figure: replay to an instant and analytics rebuilds over 1,000,000 events.
bench-replay: install
	$(BIN)/python bench/replay_rebuild.py

# Issue 22's timeline figure: the access timeline of a group of 10,000 members over a year, read and drawn as
# SVG, on a log of 1,000,000 events (median and p99 of 20 runs; the budget is a second). About a minute and a half.
bench-console-timeline: install
	$(BIN)/python bench/console_timeline.py

# Issue 21's feed figure: catching up on a 1,000,000-event log through the event feed, beside read_log.
bench-feed: install
	$(BIN)/python bench/event_feed.py

# Issue 18's HTTP-edge figures: /healthz and RSS under huge headers and slowloris; with
# BASELINE_TREE=/path/to/old/checkout (its .venv installed), the old code beside this tree in the same run.
bench-http-edge: install
	$(BIN)/python bench/http_edge.py $(if $(BASELINE_TREE),--baseline-tree $(BASELINE_TREE))

# Issue 18's figure: the largest bodies the limit admits, in their worst shapes, and /healthz meanwhile.
# BASELINE_TREE=/path/to/old/checkout (with its own .venv) measures it beside this tree, turn by turn.
bench-large-bodies: install
	$(BIN)/python bench/large_bodies.py $(if $(BASELINE_TREE),--baseline-tree $(BASELINE_TREE))

# Issue 18's figure: tenant B's latency while tenant A runs its costliest searches, idle and loaded, in turns;
# BASELINE_TREE=/path/to/old/checkout (with its .venv) adds that tree, run in turns with this one.
bench-tenant-fairness: install
	$(BIN)/python bench/tenant_fairness.py $(if $(BASELINE_TREE),--baseline-tree $(BASELINE_TREE))

# What one case folding (issue 18.4) costs POST /Users and userName eq; BASELINE_TREE=DIR (a checkout with its own
# .venv) measures the code before it in the same run, in turns. About 2 minutes, 4 with a baseline.
bench-fold: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/case_folding.py $(if $(BASELINE_TREE),--baseline-tree $(BASELINE_TREE))

# Issue 18's point 7: memory and /healthz p99 while auditors read an org of 1,000,000 events. Give
# BASELINE_TREE=/path/to/old/checkout (with its .venv) to measure it side by side with this tree.
bench-audit-memory: install
	$(BIN)/python bench/audit_memory.py $(if $(BASELINE_TREE),--baseline-tree $(BASELINE_TREE))

# How long PostgreSQL is without a primary after the primary node crashes, with the failover test's monitor
# timeouts and with pg_auto_failover's defaults (about 3 minutes; bench/failover_time.py).
bench-failover: install $(HA_PACKAGES)
	$(BIN)/python -m bench.failover_time

# The console's pages with an organization of 100,000 users and 1,000,000 events, beside GET /Users/{id}.
bench-console: install
	$(BIN)/python bench/console_pages.py

# What encrypting personal data costs: POST /Users and a full rebuild, with and without the cipher, in turns.
bench-personal-data: install
	$(BIN)/python bench/personal_data.py
