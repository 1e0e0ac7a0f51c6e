#!/usr/bin/env bash
# Installs everything splitfit's tests and examples need, offline-safe:
#   1. Debian's Fashion-MNIST (IDX files) for the BatchNorm examples, when missing and we are root;
#   2. Debian's chromium for the report's browser test, when missing and we are root;
#   3. a C compiler, when missing and we are root: the crash-point sweep (`npm run crash-sweep`)
#      compiles its LD_PRELOAD shim (test/crash/shim/crash-shim.c) with cc;
#   4. npm packages (`npm ci`), whose postinstall builds native TensorFlow from the
#      tensorflow-cpu wheel (scripts/native-build.mjs) and whose prepare compiles TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_updated=0
# need <what it is for> <package…>: installs Debian packages as root, else says how to.
need() {
  local why=$1
  shift
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[splitfit setup] installing Debian package(s) $* ($why)"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$apt_updated" = 0 ]; then
      apt-get update -qq >/dev/null
      apt_updated=1
    fi
    apt-get install -y -qq "$@" >/dev/null
  else
    echo "[splitfit setup] missing: run 'apt-get install $*' as root ($why)"
  fi
}

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte ]; then
  need "Fashion-MNIST for the BatchNorm examples" dataset-fashion-mnist
fi
# The report's browser test drives Debian's chromium with playwright-core (never `playwright install`).
[ -x /usr/bin/chromium ] || need "browser test of report.html" chromium
command -v cc >/dev/null || need "the crash-point sweep's LD_PRELOAD shim" gcc libc6-dev

echo "[splitfit setup] npm ci (postinstall builds native TensorFlow offline; prepare compiles TypeScript)"
npm ci --no-audit --no-fund
node dist/cli/main.js doctor
