#!/usr/bin/env bash
# Installs everything splitfit's tests and examples need, offline-safe:
#   1. Debian's Fashion-MNIST (IDX files) for the BatchNorm examples, when missing and we are root;
#   2. Debian's chromium for the report's browser test, when missing and we are root;
#   3. npm packages (`npm ci`), whose postinstall builds native TensorFlow from the
#      tensorflow-cpu wheel (scripts/native-build.mjs) and whose prepare compiles TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[splitfit setup] installing Debian package dataset-fashion-mnist"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "[splitfit setup] Fashion-MNIST missing: run 'apt-get install dataset-fashion-mnist' as root for the BatchNorm examples"
  fi
fi

# The report's browser test drives Debian's chromium with playwright-core (never `playwright install`).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[splitfit setup] installing Debian package chromium (browser test of report.html)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq chromium >/dev/null
  else
    echo "[splitfit setup] chromium missing: run 'apt-get install chromium' as root for the report's browser test (or set SPLITFIT_CHROMIUM)"
  fi
fi

echo "[splitfit setup] npm ci (postinstall builds native TensorFlow offline; prepare compiles TypeScript)"
npm ci --no-audit --no-fund
node dist/cli/main.js doctor
