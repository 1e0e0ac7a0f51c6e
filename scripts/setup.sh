#!/usr/bin/env bash
# Installs everything splitfit's tests and examples need, offline-safe:
#   1. Debian's Fashion-MNIST (IDX files) for the BatchNorm examples, when missing and we are root;
#   2. a C compiler, when missing and we are root: the crash-point sweep (`npm run crash-sweep`)
#      compiles its LD_PRELOAD shim (test/crash/shim/crash-shim.c) with cc;
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

if ! command -v cc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[splitfit setup] installing gcc and libc6-dev for the crash-point sweep's LD_PRELOAD shim"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq gcc libc6-dev >/dev/null
  else
    echo "[splitfit setup] no C compiler: run 'apt-get install gcc libc6-dev' as root for npm run crash-sweep"
  fi
fi

echo "[splitfit setup] npm ci (postinstall builds native TensorFlow offline; prepare compiles TypeScript)"
npm ci --no-audit --no-fund
node dist/cli/main.js doctor
