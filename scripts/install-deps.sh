#!/usr/bin/env bash
# Installs every Debian package RPTQ Workbench needs to build, test and benchmark, and to check its Debian package
# (desktop-file-utils, appstream, strace; dpkg-shlibdeps comes with build-essential's dpkg-dev), and to run the
# OpenGL scatter test on a virtual X display (xvfb, xauth, Mesa's software OpenGL), and for scripts/fetch-models.sh
# (python3-venv, python3-pip: the GGUF converter's venv).
# Usage: scripts/install-deps.sh [--bench]   (--bench adds PyTorch for the side-by-side benchmarks)
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PKGS=(
  build-essential cmake ninja-build pkg-config
  libopenblas-dev libopenblas-openmp-dev libdnnl-dev nlohmann-json3-dev libpcre2-dev libcli11-dev
  libhdf5-dev libssl-dev qt6-base-dev qt6-charts-dev libqt6opengl6-dev qt6-svg-dev
  libgtest-dev libgmock-dev
  desktop-file-utils appstream strace
  xvfb xauth libgl1-mesa-dri libglx-mesa0
  python3 python3-h5py python3-numpy python3-venv python3-pip
)
if [ "${1:-}" = "--bench" ]; then PKGS+=(python3-torch python3-numpy); fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PKGS[@]}"
