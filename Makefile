# ocsf-anomaly: the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch's CPU build, installed first and exactly: PyPI's torch is the CUDA build (several GB). Taken
# from pip's configured find-links when a wheel lies there (no network), else from PyTorch's CPU
# index beside PyPI (`make run TORCH_INDEX=` takes PyPI's). Its exact pin is written once, in
# pyproject.toml's dependencies.
TORCH := $(shell grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_FROM := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# splunk-appinspect, a proprietary dev tool that tests the Splunk app's package: it pins old packages
# (beautifulsoup4, chardet, lxml, ...), so it lives in a venv of its own, never in .venv, and is never shipped.
APPINSPECT_VENV := .venv-appinspect
APPINSPECT_STAMP := $(APPINSPECT_VENV)/.installed
APPINSPECT_SPEC := splunk-appinspect>=4.3,<5

.PHONY: run report test lint format bench clean splunk-app system-packages wheelhouse image images-airgap e2e

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# What `make run` needs (the package); the tools `make test` adds (the dev extra) come on top.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	@test -n "$(TORCH)" || { echo "pyproject.toml pins no torch==VERSION"; exit 1; }
	$(PIP) install -q --no-index --no-deps $(TORCH) 2>/dev/null || { \
		echo "no $(TORCH) wheel on pip's find-links: asking $(if $(TORCH_INDEX),$(TORCH_INDEX) and PyPI,PyPI)"; \
		$(PIP) install -q $(TORCH_FROM) $(TORCH); }
	$(PIP) install -q -e .
	touch $@

$(DEV_STAMP): $(STAMP)
	$(PIP) install -q -e '.[dev]'
	touch $@

# Debian packages the tests need, installed when missing: libmagic1 (AppInspect reads file types with
# it), openssl (the fake splunkd's TLS certificate), prometheus-alertmanager (the alert tests' receiver),
# docker-compose (validates docker-compose.yml; no engine needed, so not its recommended docker.io),
# prometheus (promtool checks deploy/prometheus; a real Prometheus scrapes the scorer), openjdk-17-jre-headless
# (PySpark's local mode for score-spark's tests), chromium (the report's page opened in a real browser; Playwright
# drives Debian's build through its executable path: no browser is downloaded).
SYSTEM_PACKAGES := libmagic1 openssl prometheus-alertmanager docker-compose prometheus openjdk-17-jre-headless chromium
system-packages:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { apt-get update && apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES); }

$(APPINSPECT_STAMP): | system-packages
	rm -rf $(APPINSPECT_VENV)
	$(PYTHON) -m venv $(APPINSPECT_VENV)
	$(APPINSPECT_VENV)/bin/pip install -q '$(APPINSPECT_SPEC)'
	touch $@

## run: install, train the demo model if there is none, score the demo file, then serve the model.
run: $(STAMP)
	$(VENV)/bin/ocsf-anomaly demo
	$(VENV)/bin/ocsf-anomaly serve

## report: the demo's scored events (from `make run`) as a self-contained HTML page, data/demo/report.html
## ($OCSF_ANOMALY_HOME/demo/report.html when that is set, as `make run` put the demo there).
REPORT_STAMP := $(VENV)/.installed-report
$(REPORT_STAMP): $(STAMP)
	$(PIP) install -q -e '.[report]'
	touch $@

# where `ocsf-anomaly demo` writes, asked of scorer.paths as the demo asks it (data/, or $OCSF_ANOMALY_HOME);
# the registry it resolves models:/ in is that place's too (or OCSF_ANOMALY_REGISTRY_URI's)
DEMO_DIR = $(shell $(PY) -c 'from scorer.paths import state_dir; print(state_dir() / "demo")')
report: $(REPORT_STAMP)
	@test -f '$(DEMO_DIR)/scored.jsonl' || { echo "no $(DEMO_DIR)/scored.jsonl: \`make run\` scores the demo file first"; exit 1; }
	$(VENV)/bin/ocsf-anomaly report '$(DEMO_DIR)/scored.jsonl' --model models:/ocsf-anomaly-demo@champion --output '$(DEMO_DIR)/report.html'

## lint: ruff (lint + format check), and mypy on scorer/ and bench/ (a benchmark calling what was renamed or removed fails here).
lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check scorer tests bench deploy
	$(VENV)/bin/ruff format --check scorer tests bench deploy
	$(VENV)/bin/mypy

format: $(DEV_STAMP)
	$(VENV)/bin/ruff format scorer tests bench deploy
	$(VENV)/bin/ruff check --fix scorer tests bench deploy

## test: lint, then every test (with splunk-appinspect in its own venv for the Splunk app's package test).
## pytest's exit code 5 (no tests collected) is a failure.
# Three workers on two cores, each taking the next test as it frees (worksteal): many tests wait on a
# process, a broker or a timeout rather than compute (9 min 5 s with two workers, 7 min 48 s with three).
test: lint system-packages $(APPINSPECT_STAMP)
	$(PY) -m pytest -n 3 --dist worksteal --durations=20 tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

## bench: the three main benchmarks as BENCHMARKS.md runs them (3 training runs; detection over seeds 0 1 2
## and its five protocols: about 20 minutes).
bench: $(STAMP)
	$(PY) bench/bench_train.py --runs 3
	$(PY) bench/bench_score.py
	$(PY) bench/bench_detection.py --seeds 0 1 2 --protocols nsl-dev unsw-ordered demo-hiring nsl-iid unsw-iid

## splunk-app: the Splunk app, packed as Splunk installs it: dist/ocsf_anomaly-<version>.tgz (version: app.conf [id]).
# One top folder named after the app; caches, local/ settings, local.meta and dotfiles stay out.
SPLUNK_APP_SRC ?= integrations/splunk/ocsf_anomaly
SPLUNK_DIST ?= dist
SPLUNK_APP_NAME = $(notdir $(abspath $(SPLUNK_APP_SRC)))
SPLUNK_APP_VERSION = $(shell sed -n '/^\[id\]/,/^\[/s/^version *= *//p' $(SPLUNK_APP_SRC)/default/app.conf)
splunk-app:
	@test -n "$(SPLUNK_APP_VERSION)" || { echo "no [id] version in $(SPLUNK_APP_SRC)/default/app.conf"; exit 1; }
	mkdir -p $(SPLUNK_DIST)
	tar -C $(dir $(abspath $(SPLUNK_APP_SRC))) -czf $(SPLUNK_DIST)/$(SPLUNK_APP_NAME)-$(SPLUNK_APP_VERSION).tgz \
		--exclude=__pycache__ --exclude='*.py[co]' --exclude='.*' \
		--exclude='$(SPLUNK_APP_NAME)/local' --exclude='$(SPLUNK_APP_NAME)/metadata/local.meta' \
		--sort=name --owner=0 --group=0 --numeric-owner --mode='u+rwX,go+rX,go-w' \
		$(SPLUNK_APP_NAME)
	@echo "$(SPLUNK_DIST)/$(SPLUNK_APP_NAME)-$(SPLUNK_APP_VERSION).tgz"

## wheelhouse: what the Dockerfile installs from, in build/wheelhouse: torch's CPU build, this project's wheel, and the
## versions of everything else in .venv (constraints.txt), so that the image runs what `make test` ran.
WHEELHOUSE := build/wheelhouse
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= ocsf-anomaly:$(VERSION)
# the extras the image installs (Dockerfile: "$$1[opensearch,kafka]"): in .venv before the freeze, so pinned too
IMAGE_EXTRAS := opensearch,kafka
wheelhouse: $(STAMP)
	mkdir -p $(WHEELHOUSE)
	# a torch wheel of an earlier pin would be a second torch-*.whl for the Dockerfile's glob: removed
	for wheel in $(WHEELHOUSE)/torch-*.whl; do \
		case "$${wheel##*/}" in torch-$(patsubst torch==%,%,$(TORCH))[-+]*) ;; *) rm -f "$$wheel" ;; esac; \
	done
	$(PIP) download -q --no-deps --no-index -d $(WHEELHOUSE) $(TORCH) 2>/dev/null || { \
		echo "no $(TORCH) wheel on pip's find-links: asking $(if $(TORCH_INDEX),$(TORCH_INDEX) and PyPI,PyPI)"; \
		$(PIP) download -q --no-deps $(TORCH_FROM) -d $(WHEELHOUSE) $(TORCH); }
	@test "$$(ls $(WHEELHOUSE)/torch-*.whl | wc -l)" -eq 1 || { echo "$(WHEELHOUSE) holds more than one torch wheel: $$(ls $(WHEELHOUSE)/torch-*.whl)"; exit 1; }
	$(PIP) install -q -e '.[$(IMAGE_EXTRAS)]'
	rm -f $(WHEELHOUSE)/ocsf_anomaly-*.whl
	# the wheel's file times from the last commit: the same sources give the same bytes, so a
	# rebuilt image reuses its cached project layer
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 315532800) $(PIP) wheel -q --no-deps -w $(WHEELHOUSE) .
	$(PIP) freeze --exclude-editable | grep -v '^torch==' > $(WHEELHOUSE)/constraints.txt

## image: the scorer's container image ($(IMAGE)) on BASE_IMAGE (default: the official python:3.11-slim-bookworm).
image: wheelhouse
	docker build $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) -t $(IMAGE) .

## images-airgap: every image from Debian's and PyPI's packages (no registry): a debootstrap base, Python,
## stand-ins for Redis, Prometheus, Alertmanager and MLflow, and the scorer on that Python; the image
## variables for docker-compose in a marked block of .env (the rest of .env, tokens included, kept).
images-airgap: wheelhouse
	dpkg -s debootstrap >/dev/null 2>&1 || { apt-get update && apt-get install -y --no-install-recommends debootstrap; }
	bash deploy/docker/build-airgap-images.sh
# the scorer on that Python: `make image`'s build, without its wheelhouse made a second time
	docker build --build-arg BASE_IMAGE=$$(sed -n '/^# >>> make images-airgap/,/^# <<< make images-airgap/s/^PYTHON_IMAGE=//p' .env) -t $(IMAGE) .

## e2e: the docker-compose stack brought up on this machine and checked end to end through its ports (deploy/e2e.py:
## minutes; root; starts dockerd when none runs, builds air-gapped when the official images cannot be pulled).
e2e: $(STAMP)
	dpkg -s docker.io docker-compose >/dev/null 2>&1 || { apt-get update && apt-get install -y --no-install-recommends docker.io docker-compose; }
	$(PY) deploy/e2e.py

## clean: remove the virtualenv, build outputs and tool caches; data/ (the model registry, demo files) stays.
clean:
	rm -rf $(VENV) $(APPINSPECT_VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
