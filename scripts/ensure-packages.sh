#!/usr/bin/env bash
# Makes sure the Debian packages the tests drive are installed: Chromium for the dashboard's browser test (driven by
# playwright-core, which downloads no browser) and the clients of the compatibility test (test/clients.e2e.test.ts).
# As root with apt-get it installs what is missing, so `npm ci && npm test` works on a fresh machine; otherwise it
# names what to install. Asked of dpkg, as python3-requests and python3-socks are no commands.
set -euo pipefail
missing=()
for pkg in chromium wget git python3-requests python3-socks; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q ' installed$' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-packages: installing ${missing[*]}" >&2
  apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
else
  echo "ensure-packages: missing Debian packages: ${missing[*]} (apt-get install -y ${missing[*]})" >&2
  exit 1
fi
