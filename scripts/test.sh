#!/usr/bin/env bash
# The test command (README.md): installs the servers and tools the tests use
# when they are missing, checks the deploy/ files, then runs every test.
# Needs a Rust toolchain and a C compiler; on Debian/Ubuntu it installs the
# packages prometheus-alertmanager (Alertmanager and amtool: the Alertmanager
# test starts a real Alertmanager on loopback), prometheus (Prometheus and
# promtool: the Prometheus end-to-end test scrapes a running peakguard) and
# docker-compose (a static check of docker-compose.yml; no engine needed).
# It also installs Tansu (a Kafka-compatible broker written in Rust, from
# crates.io; the exactly-once tests start it on loopback with in-memory
# storage) with `cargo install` when it is missing: 10-25 minutes, once.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "== installing $* (Debian packages)"
  for attempt in 1 2 3; do
    if $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"; then
      return 0
    fi
    echo "apt-get failed (attempt $attempt); retrying in 10 s" >&2
    sleep 10
  done
  return 1
}

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
{ [ -n "${ALERTMANAGER_BIN:-}" ] || have prometheus-alertmanager || have alertmanager; } && have amtool \
  || missing+=(prometheus-alertmanager)
{ [ -n "${PROMETHEUS_BIN:-}" ] || have prometheus; } && have promtool || missing+=(prometheus)
have docker-compose || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}" || { echo "cannot install ${missing[*]}" >&2; exit 1; }
fi
if [ -z "${TANSU_BIN:-}" ] && ! have tansu && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  echo "== installing tansu 0.6.0 (cargo install; the first time takes 10-25 minutes)"
  cargo install tansu --version 0.6.0 --features dynostore --locked
fi
# Debian's packages start their services where an init system runs; the
# tests start their own servers on free ports.

./scripts/check-deploy.sh
cargo test "$@"
