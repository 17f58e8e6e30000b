#!/usr/bin/env bash
# Installs what building and running metareason needs on a fresh Debian or
# Ubuntu machine: cmake, a C/C++ compiler and libclang-dev (llama.cpp and
# bindgen, which loads libclang and its headers), Python with pip (models are
# fetched from PyPI packages; the sandbox runs programs with the system
# Python), bubblewrap (the sandbox for model-written programs), git (the
# commit in a benchmark run's manifest). Idempotent and quiet when all is
# there already.
#
# Packages are checked by name with dpkg, not by looking for files: a machine
# with libclang-cpp14 but not libclang-dev has look-alike files
# (libclang-cpp.so.14) and no libclang.so or clang's headers, and bindgen
# then fails with "Unable to find libclang".
set -euo pipefail

# util-linux brings setpriv, with which the sandbox drills also run as an
# unprivileged user.
packages=(cmake make g++ git libclang-dev bubblewrap python3 python3-pip ca-certificates util-linux)

need=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || need+=("$p")
  done
else
  # Not Debian: check for the very things the build uses, and say what is
  # missing instead of guessing a package manager.
  missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v c++ >/dev/null 2>&1 || missing+=("a C++ compiler")
  command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || missing+=("python3 pip")
  if [ -z "${LIBCLANG_PATH:-}" ] && ! ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so'; then
    missing+=("libclang (the development package, or set LIBCLANG_PATH)")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "metareason setup: not a Debian/Ubuntu system; install these yourself and run again: ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "metareason setup: installing ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "metareason setup: need root (or sudo) to install ${need[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "metareason setup: Rust is missing; install it from https://rustup.rs and run again" >&2
  exit 1
fi
