#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build the object pairs of a scenario patch in a configured kernel tree, the
# way the kernel under test was built, and copy them to OUT as
# NAME.orig.o / NAME.patched.o.
#
#   verify/kernel/build-scenario.sh TREE PATCH OUT fs/namespace.o fs/drop_caches.o
#
# TREE: linux-source-6.12 unpacked, with the vmlinux.lds.h change and the
# kernel's `config` as .config (see rebuild-assets.sh and ../shared/kernel's
# README). Objects built this way are byte-identical to those in the kernel
# built from that tree, which is what the livepatch is loaded into.
set -euo pipefail
tree=$(cd "$1" && pwd); patch=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); out=$(mkdir -p "$3" && cd "$3" && pwd); shift 3
kcflags="-ffunction-sections -fdata-sections"
cd "$tree"
make -s olddefconfig
build() { make -s -j"$(nproc)" KCFLAGS="$kcflags" "$@"; }
build "$@"
for o in "$@"; do cp "$o" "$out/$(basename "$o" .o).orig.o"; done
patch -p1 --forward < "$patch"
trap 'patch -p1 -R < "$patch" >/dev/null' EXIT
build "$@"
for o in "$@"; do cp "$o" "$out/$(basename "$o" .o).patched.o"; done
echo "objects in $out"
