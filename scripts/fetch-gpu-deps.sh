#!/bin/sh
# fetch-gpu-deps.sh — downloads (not installs) the Debian packages a lent GPU machine lacks
# (OpenBLAS, stb, zlib headers, Fashion-MNIST) into .deps/ (git-ignored, about 45 MB), to be
# carried with a device run. The gpu-*.sh scripts unpack them there (scripts/deps-root.sh) when
# DEPS_DEBS is set, without installing anything on that machine.
set -eu
cd "$(dirname "$0")/.."
mkdir -p .deps
cd .deps
apt-get download libopenblas0-pthread libopenblas-pthread-dev libopenblas-dev libgfortran5 \
    libstb0 libstb-dev zlib1g-dev dataset-fashion-mnist
ls -la
