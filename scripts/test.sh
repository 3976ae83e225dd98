#!/usr/bin/env bash
# The test command (README.md): installs the servers the tests start when they
# are missing, then runs every test. Needs a Rust toolchain and a C compiler;
# on Debian/Ubuntu it installs the prometheus-alertmanager package (the
# Alertmanager test starts a real Alertmanager on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

have_alertmanager() {
  [ -n "${ALERTMANAGER_BIN:-}" ] || command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1
}

if ! have_alertmanager; then
  echo "== installing prometheus-alertmanager (Debian package) for tests/alertmanager.rs"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  for attempt in 1 2 3; do
    if $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus-alertmanager; then
      break
    fi
    echo "apt-get failed (attempt $attempt); retrying in 10 s" >&2
    sleep 10
  done
  have_alertmanager || { echo "cannot install prometheus-alertmanager; set ALERTMANAGER_BIN to an alertmanager binary" >&2; exit 1; }
fi

cargo test "$@"
