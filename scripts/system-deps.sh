#!/usr/bin/env bash
# Installs the system programs ncd needs and pip cannot provide: Graphviz's `dot`, and the
# fonts the drawings are set in (Times → Liberation Serif; glyphs in DejaVu Sans), whose
# metrics decide the layout. With --browser (make test) also Chromium, in which the suite drives
# the JupyterLab widget (tests/widgets/test_browser.py).
# As root on Debian/Ubuntu it installs them; otherwise it names the command to run and fails.
set -euo pipefail
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
if [ "${1:-}" = --browser ]; then
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
    missing+=(chromium)
fi
if command -v fc-list >/dev/null 2>&1; then
  fc-list | grep -qi "DejaVu Sans" || missing+=(fonts-dejavu-core)
  fc-list | grep -qi "Liberation Serif" || missing+=(fonts-liberation2)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ncd: installing ${missing[*]} (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
echo "ncd: missing system packages: ${missing[*]}." >&2
echo "     Install them, e.g.: sudo apt-get install ${missing[*]}   (macOS: brew install graphviz)" >&2
exit 1
