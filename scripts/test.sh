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
# llama-cpp-python's (pinned), into target/pydeps-llama. Built from source
# once (about 10 minutes), portable (GGML_NATIVE=OFF): pip's own wheel cache
# is shared by machines with different CPUs, and a wheel built for one CPU's
# instructions dies of SIGILL on the first request on another. So the wheel
# is built without pip's cache and kept in metareason's own cache under a
# name that says how it was built.
LLAMA_PY=0.3.36
LLAMA_WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/metareason/wheels/llama-cpp-python-$LLAMA_PY-portable"
LLAMA_MARK=target/pydeps-llama/.metareason-portable-build
if ! { [ -f "$LLAMA_MARK" ] && PYTHONPATH=target/pydeps-llama python3 -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_PY')" 2>/dev/null; }; then
  rm -rf target/pydeps-llama
  if ! ls "$LLAMA_WHEELS"/llama_cpp_python-"$LLAMA_PY"-*.whl >/dev/null 2>&1; then
    echo "metareason test: building llama-cpp-python $LLAMA_PY's server (compiles llama.cpp, portable)" >&2
    rm -rf "$LLAMA_WHEELS.part"
    CMAKE_ARGS="-DGGML_NATIVE=OFF" python3 -m pip wheel --quiet --disable-pip-version-check \
      --no-cache-dir --no-deps --wheel-dir "$LLAMA_WHEELS.part" "llama-cpp-python==$LLAMA_PY" >&2
    rm -rf "$LLAMA_WHEELS"
    mv "$LLAMA_WHEELS.part" "$LLAMA_WHEELS"
  fi
  wheel=$(ls "$LLAMA_WHEELS"/llama_cpp_python-"$LLAMA_PY"-*.whl | head -n 1)
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts \
    --target target/pydeps-llama "$wheel[server]" >&2
  touch "$LLAMA_MARK"
fi
cargo test --release --locked --workspace "$@"
