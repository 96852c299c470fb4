# The two commands a fresh machine needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint docs venv clean

venv: $(STAMP)

# CPU torch is pinned and installed first: an unpinned torch pulls several GB of CUDA.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,bm3d,napari,docs,bmz]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/microdenoise demo

# The napari tests need a display: run `xvfb-run -a make test` on a headless machine
# (.ci/run does); without one they are skipped with the reason.
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

# The documentation site (mkdocs.yml, docs/): warnings are errors. `$(BIN)/mkdocs serve`
# serves it at http://127.0.0.1:8000 while you edit.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) build site *.egg-info src/*.egg-info
