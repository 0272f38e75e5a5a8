# deps-root.sh — sourced by the gpu-*.sh scripts: unpack_deps unpacks DEPS_DEBS (the .deb files
# scripts/fetch-gpu-deps.sh puts in .deps/, carried with a device run) with dpkg -x into a
# private root, /tmp/cnn-deps-root, once per machine (never installing anything), and exports
# DEPS_ROOT (even when a package fails: scripts started after this one, side by side, must not
# unpack into the same folder at once). Nothing to do without DEPS_DEBS, or when DEPS_ROOT is
# set already. Status 1 when a package does not unpack.
# shellcheck shell=bash
unpack_deps() {
    if [ -z "${DEPS_DEBS:-}" ] || [ -n "${DEPS_ROOT:-}" ]; then return 0; fi
    export DEPS_ROOT=/tmp/cnn-deps-root
    if [ ! -f "$DEPS_ROOT/.unpacked" ]; then
        mkdir -p "$DEPS_ROOT"
        for f in "$DEPS_DEBS"/*.deb; do dpkg -x "$f" "$DEPS_ROOT" || return 1; done
        touch "$DEPS_ROOT/.unpacked"
    fi
}
