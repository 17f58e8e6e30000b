#!/usr/bin/env bash
# A screenshot of an episode's trace page from a running `metareason serve`.
# Usage: scripts/trace_screenshot.sh EPISODE_ID [OUT.png] [BASE_URL]
# Needs chromium-headless-shell (or set BROWSER to a Chromium binary).
set -euo pipefail
id="${1:?usage: trace_screenshot.sh EPISODE_ID [OUT.png] [BASE_URL]}"
out="${2:-episode-$id.png}"
base="${3:-http://127.0.0.1:8080}"
browser="${BROWSER:-chromium-headless-shell}"
command -v "$browser" >/dev/null || { echo "install chromium-headless-shell (apt) or set BROWSER" >&2; exit 1; }
"$browser" --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,2400 \
  --screenshot="$out" "$base/episodes/$id" 2>/dev/null
echo "$out"
