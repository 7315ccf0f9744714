#!/usr/bin/env bash
# How long a simulator report takes to open in a browser: headless Chromium loads report.html from disk and the
# report's own script records, when every chart is drawn, the milliseconds since navigation began
# (performance.now(), in <html data-drawn-ms>). Prints that, the file's size and the timeline's length, for each
# report given (ROUNDS times each; the first round includes Chromium's own cold start of its renderer).
#   bench/report-open.sh path/to/report.html [more.html ...]
set -euo pipefail
ROUNDS=${ROUNDS:-3}
for report in "$@"; do
  size=$(stat -c %s "$report")
  seconds=$(/usr/bin/python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["timeline"]))' "$(dirname "$report")/report.json")
  for round in $(seq 1 "$ROUNDS"); do
    profile=$(mktemp -d)
    drawn=$(timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$profile" \
      --dump-dom "file://$(realpath "$report")" 2>/dev/null | grep -o 'data-drawn-ms="[0-9]*"' | grep -o '[0-9]*' || true)
    rm -rf "$profile"
    echo "$report: ${size} bytes, ${seconds} s of timeline, round $round: drawn ${drawn:-never} ms after navigation began"
  done
done
