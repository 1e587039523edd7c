#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A no-change pair of the defconfig Linux 6.12 kernel whose only difference
# is __LINE__: vmlinux.o built as is, and built again with one comment line
# added at the top of every .c file in fs/ kernel/ mm/ init/. No function's
# code changes, so `klp diff` of the two must report no changed function;
# every difference it sees is a line number.
#
#   verify/kernel/line-shift-pair.sh [OUT]       (default kernel-assets/6.12-def-lineshift)
#   klp diff OUT/vmlinux.o.orig OUT/vmlinux.o.shifted /tmp/out.o --objname vmlinux --explain
#
# KLP_CONFIG=verify/kernel/6.12-lto.config KLP_MAKE_FLAGS=LLVM=1 makes the
# pair of the clang ThinLTO kernel instead.
#
# KLP_PATCHES="NAME=FILE ..." also builds vmlinux.o.NAME with each patch
# applied alone (-p1) on top of the original, and reverts it.
#
# KLP_TREE=DIR reuses a configured tree (e.g. the one rebuild-assets.sh
# leaves in OUT/tree); otherwise the tree is unpacked into OUT/tree. The
# added lines are taken out again at the end, so the tree is left as found.
# About 40 minutes on 2 cores from an empty tree, most of it the first build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-kernel-assets/6.12-def-lineshift}" && cd "${1:-kernel-assets/6.12-def-lineshift}" && pwd)
tree=${KLP_TREE:-$out/tree}
kcflags="-ffunction-sections -fdata-sections"
marker='/* klp: line shift */'
export KBUILD_BUILD_TIMESTAMP="2026-01-01 00:00:00" KBUILD_BUILD_USER=klp KBUILD_BUILD_HOST=klp
export KLP_CONFIG=${KLP_CONFIG:-$here/6.12-def.config}

. "$here/prepare-tree.sh"

build() { # NAME: build vmlinux, keep its vmlinux.o as OUT/vmlinux.o.NAME
    local t0=$SECONDS
    make -j"$(nproc)" ${KLP_MAKE_FLAGS:-} KCFLAGS="$kcflags" vmlinux > "$out/build-$1.log" 2>&1
    cp vmlinux.o "$out/vmlinux.o.$1"
    echo "built vmlinux.o.$1 in $((SECONDS - t0)) s"
}

shifted_files() { find fs kernel mm init -name '*.c' -type f | LC_ALL=C sort; }

unshift() { # take the marker line out wherever it is the first line
    shifted_files | while read -r f; do
        if [ "$(head -n1 "$f")" = "$marker" ]; then sed -i '1d' "$f"; fi
    done
}

step build-orig
unshift
build orig

for named in ${KLP_PATCHES:-}; do
    name=${named%%=*} patch_file=${named#*=}
    step "build-$name"
    patch -p1 --dry-run -s < "$patch_file"
    trap 'patch -p1 -R -s < "$patch_file"' EXIT
    patch -p1 -s < "$patch_file"
    build "$name"
    patch -p1 -R -s < "$patch_file"
    trap - EXIT
done

step shift
trap unshift EXIT
count=0
while read -r f; do
    sed -i "1i $marker" "$f"
    count=$((count + 1))
done < <(shifted_files)
echo "one line added at the top of $count files"

step build-shifted
build shifted

step done
echo "pair in $out: vmlinux.o.orig vmlinux.o.shifted"
