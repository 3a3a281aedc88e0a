#!/bin/sh
# install_check.sh BUILD_DIR — `meson install` into a scratch DESTDIR, then checks that the
# installed `lumen` finds its Lua libraries next to itself and that the system lua5.4 can
# `require "lumen"` through the installed C module. TAP output.
set -u
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
echo "1..3"
if meson install -C "$build" --destdir "$tmp" --no-rebuild --quiet >"$tmp/log" 2>&1; then
    echo "ok 1 - meson install into a DESTDIR"
else
    echo "not ok 1 - meson install into a DESTDIR"; sed 's/^/# /' "$tmp/log"
fi
exe=$(find "$tmp" -path '*/bin/lumen' | head -n1)
lib=$(dirname "$(find "$tmp" -name 'liblumen.so*' | head -n1)")
share=$(find "$tmp" -type d -path '*/share/lua/5.4' | head -n1)
cmod=$(find "$tmp" -type d -path '*/lib/lua/5.4' | head -n1)
# Run from an unrelated directory, without the source tree's path, so nothing is found by luck.
out=$(cd "$tmp" && LUMEN_LUA_DIR= LD_LIBRARY_PATH="$lib" "$exe" -e 'print((lm.ones(2) * 3):sum():item(), package.searchpath("lumen", package.path))' 2>&1)
case "$out" in
    "6.0	$share/lumen/init.lua") echo "ok 2 - installed lumen finds its libraries next to itself" ;;
    *) echo "not ok 2 - installed lumen finds its libraries next to itself"; echo "# got: $out" ;;
esac
if ldd "$cmod/lumen/core.so" 2>/dev/null | grep -q libasan; then
    # A sanitized module cannot load into the uninstrumented lua5.4 (ASan must come first).
    echo "ok 3 - system lua5.4 requires lumen # SKIP sanitizer build"
elif command -v lua5.4 >/dev/null; then
    out=$(cd "$tmp" && LD_LIBRARY_PATH="$lib" LUA_PATH="$share/?.lua;$share/?/init.lua;;" \
          LUA_CPATH="$cmod/?.so;;" lua5.4 -e 'local lm = require "lumen"; print(lm.tensor{1, 2}:sum():item())' 2>&1)
    if [ "$out" = "3" ]; then echo "ok 3 - system lua5.4 requires lumen"
    else echo "not ok 3 - system lua5.4 requires lumen"; echo "# got: $out"; fi
else
    echo "ok 3 - system lua5.4 requires lumen # SKIP lua5.4 not installed"
fi
