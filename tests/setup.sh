#!/usr/bin/env bash
# Set up a machine to run the test suite: the Python venv with the test extras at the versions
# locked in requirements.txt and, when run as root on Debian/Ubuntu, the engines the end-to-end
# tests start (Docker engine, registry, Prometheus and its Pushgateway, wrk, debootstrap for the
# air-gapped base image, skopeo, PostgreSQL for the prediction log). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(docker.io docker-registry prometheus prometheus-pushgateway wrk debootstrap skopeo postgresql)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: not root or no apt: engine tests will skip (missing: ${missing[*]})"
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c requirements.txt -e '.[serve,test]'  # requirements.txt: the lock
echo "setup: ready; run the tests with .venv/bin/python -m pytest"
