#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium: a full-page PNG screenshot, and a check on the DOM Chromium
# built that every chart is there (one <svg> per chart, each section heading present).
#   scripts/report_screenshot.sh RUN_DIR [OUT.png]      (installs chromium from Debian if missing)
set -euo pipefail
run="${1:?usage: scripts/report_screenshot.sh RUN_DIR [OUT.png]}"
png="${2:-$run/report.png}"
html="$(cd "$run" && pwd)/report.html"
[ -f "$html" ] || { echo "report_screenshot.sh: $html not found (run: llmprune report $run)" >&2; exit 1; }
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars)
chromium "${flags[@]}" --window-size=1000,4200 --screenshot="$png" "file://$html" 2>/dev/null
dom="$(chromium "${flags[@]}" --dump-dom "file://$html" 2>/dev/null)"
svgs=$(grep -o "<svg" <<<"$dom" | wc -l)
echo "screenshot: $png"
echo "charts rendered (svg elements in Chromium's DOM): $svgs"
status=0
for section in "Kept widths per layer" "Importance score distribution per layer" "Perplexity" "LoRA loss" \
               "Time per phase per rank (prune)" "Time per phase per rank (tune)"; do
    if grep -qF "<h2>$section</h2>" <<<"$dom"; then echo "  present: $section"; else echo "  MISSING: $section"; status=1; fi
done
exit $status
