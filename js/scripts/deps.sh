#!/usr/bin/env bash
# Installs what `npm test` and `npm run bench` need on a fresh Debian
# machine that has only Go, Node and npm: the Debian packages (Chromium for
# the browser tests; Ruby, Puma and Rails' ActionCable for examples/rails)
# and the npm dev dependencies. Each is installed only when missing;
# `apt-get update` runs only if something is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

missing=()
for pkg in chromium ruby puma ruby-railties ruby-actioncable; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "deps.sh: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/ws ] || [ ! -d node_modules/actioncable61 ]; then
  echo "deps.sh: npm ci"
  npm ci --no-audit --no-fund
fi
