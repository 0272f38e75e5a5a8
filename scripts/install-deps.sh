#!/bin/sh
# install-deps.sh — installs the Debian packages libcnncuda builds and trains with, only those
# missing. Needs root (or sudo) and Debian's package registry. The CUDA toolkit and cuDNN are
# optional and not installed here: without them the CPU library, tools and tests still build.
# With --torch it adds Debian's PyTorch and torchvision (about 150 MB), which the PyTorch
# parity tests (tests/test_torch_*.c, skipped without them) run against; CI does.
set -eu
PKGS="zlib1g-dev libopenblas-dev libstb-dev dataset-fashion-mnist make gcc pkgconf"
case "${1:-}" in
    --torch) PKGS="$PKGS python3-torch python3-torchvision" ;;
    "") ;;
    *) echo "install-deps: unknown option '$1' (the one option is --torch)" >&2; exit 2 ;;
esac
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
$SUDO apt-get update -qq -o Acquire::Retries=3
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o Acquire::Retries=3 \
    --no-install-recommends $missing
