#!/usr/bin/env bash
# Opens a bench report in headless Chromium and saves a screenshot, to look
# at the page as a reader would. Installs chromium-headless-shell (Debian or
# Ubuntu) when no Chromium is present.
#   scripts/report-screenshot.sh bench-out/gsm8k/report.html [shot.png] [WIDTHxHEIGHT]
set -euo pipefail
page="${1:?usage: scripts/report-screenshot.sh REPORT.html [OUT.png] [WIDTHxHEIGHT]}"
out="${2:-${page%.html}.png}"
size="${3:-1280x2400}"
[ -f "$page" ] || { echo "no such report: $page (make one with: metareason bench report DIR)" >&2; exit 1; }
browser=""
for b in chromium-headless-shell chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
done
if [ -z "$browser" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no Chromium found and no apt-get to install it: install chromium and run again" >&2
    exit 1
  fi
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing chromium-headless-shell ..." >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium-headless-shell >&2 \
    || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2
  for b in chromium-headless-shell chromium; do
    if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
  done
  [ -n "$browser" ] || { echo "Chromium could not be installed" >&2; exit 1; }
fi
abs="$(cd "$(dirname "$page")" && pwd)/$(basename "$page")"
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size="${size/x/,}" --screenshot="$out" "file://$abs" 2>/dev/null
[ -s "$out" ] || { echo "Chromium wrote no screenshot" >&2; exit 1; }
echo "$out"
