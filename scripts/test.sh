#!/usr/bin/env bash
# Runs every test: unit tests on the scripted model, HTTP-backend tests against
# a local stub server, and integration tests on the real SmolLM2-135M model
# (fetched into the model store on first use, 98 MB).
# Release mode: llama.cpp is built once for tests and the CLI alike.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CI:-}" = "true" ] && [ "${METAREASON_SKIP_MODEL_TESTS:-}" = "1" ]; then
  echo "metareason test: METAREASON_SKIP_MODEL_TESTS is not allowed in CI" >&2
  exit 1
fi
bash scripts/setup.sh
# A headless Chromium renders the trace page in the server's tests.
if ! command -v chromium-headless-shell >/dev/null 2>&1 && [ -z "${METAREASON_TEST_BROWSER:-}" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "metareason test: installing chromium-headless-shell" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium-headless-shell >/dev/null
  else
    echo "metareason test: install a headless Chromium and set METAREASON_TEST_BROWSER to it" >&2
    exit 1
  fi
fi
# The official OpenAI Python client, for the tests of `metareason serve`
# (pinned; into target/pydeps, not the system's Python).
if ! PYTHONPATH=target/pydeps python3 -c 'import openai, sys; sys.exit(openai.__version__ != "3.57.0")' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts \
    --target target/pydeps --upgrade openai==3.57.0 >&2
fi
# A real OpenAI-compatible server for the HTTP backend's tests:
# llama-cpp-python's (pinned; built from source by pip, about 10 minutes the
# first time, then from pip's wheel cache), into target/pydeps-llama.
if ! PYTHONPATH=target/pydeps-llama python3 -c 'import llama_cpp, sys; sys.exit(llama_cpp.__version__ != "0.3.36")' 2>/dev/null; then
  echo "metareason test: installing llama-cpp-python's server (compiles llama.cpp)" >&2
  rm -rf target/pydeps-llama
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts \
    --target target/pydeps-llama 'llama-cpp-python[server]==0.3.36' >&2
fi
cargo test --release --locked --workspace "$@"
