#!/usr/bin/env bash
# Installs what building metareason needs on a fresh Debian/Ubuntu machine:
# cmake and libclang (llama.cpp and its bindings), a C/C++ compiler, Python's
# pip (models are fetched from PyPI packages), bubblewrap (the sandbox that
# runs model-written programs). Idempotent and quiet when all
# is there already.
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v git >/dev/null 2>&1 || need+=(git)
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)   # the sandbox for model-written programs
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libclang; then
  need+=(libclang-dev)
fi
[ -x /usr/bin/python3 ] || need+=(python3)   # the sandbox runs programs with a system Python
if ! python3 -m pip --version >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  need+=(python3-pip)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "metareason setup: installing ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "metareason setup: need root (or sudo) to install ${need[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "metareason setup: Rust is missing; install it from https://rustup.rs and run again" >&2
  exit 1
fi
