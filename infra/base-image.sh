#!/usr/bin/env bash
# Build the air-gapped base image (default tag local/python-base:3.11) from Debian packages only.
#
# Why: where Docker Hub cannot be reached, `FROM python:3.11-slim` cannot be pulled. This makes an
# equivalent base (Debian bookworm, Python 3.11, venv with its bundled pip, CA certificates) with debootstrap and
# `docker import`, so `docker build --build-arg BASE_IMAGE=local/python-base:3.11` works offline
# from a Debian mirror. Needs root, debootstrap and a running Docker engine. About 1.5 minutes.
#
# Usage: infra/base-image.sh [TAG] [MIRROR]
set -euo pipefail

tag="${1:-local/python-base:3.11}"
mirror="${2:-${DEBIAN_MIRROR:-http://deb.debian.org/debian}}"
root="$(mktemp -d /tmp/python-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase \
  --include=python3,python3-venv,ca-certificates \
  bookworm "$root" "$mirror" >/dev/null

# Trim what a server never reads: docs, man pages, locales, apt lists and the downloaded .debs.
rm -rf "$root"/var/cache/apt/archives/*.deb \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
  "$root"/var/cache/debconf/*-old "$root"/var/log/*
find "$root/usr/lib/python3" -name '__pycache__' -prune -exec rm -rf {} +

tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "debootstrap bookworm minbase + python3 (infra/base-image.sh)" \
  - "$tag" >/dev/null
echo "$tag"
