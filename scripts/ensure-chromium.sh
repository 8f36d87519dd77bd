#!/usr/bin/env bash
# Run before the tests: the browser test drives Debian's chromium (Playwright's own browser download
# cannot work without network). Installs it with apt-get when missing and we are root.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "zerve: the browser test needs Debian's chromium: sudo apt-get install -y chromium" >&2
  exit 1
fi
echo "zerve: installing chromium for the browser test (apt-get, once)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
