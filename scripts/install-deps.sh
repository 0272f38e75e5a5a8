#!/bin/sh
# install-deps.sh — installs the Debian packages libcnncuda builds and trains with, only those
# missing. Needs root (or sudo) and Debian's package registry. The CUDA toolkit and cuDNN are
# optional and not installed here: without them the CPU library, tools and tests still build.
set -eu
PKGS="zlib1g-dev libopenblas-dev libstb-dev dataset-fashion-mnist make gcc pkgconf"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-deps: all packages present:$(printf ' %s' $PKGS)"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
