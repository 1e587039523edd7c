#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Rebuild the slim Linux 6.12 test assets that ../shared/kernel/6.12-slim
# provides, from Debian's linux-source-6.12 package, into OUT (default
# ./kernel-assets/6.12-slim): bzImage, vmlinux.zst, Module.symvers, config,
# vmlinux.o.{orig,patched}.zst, {cmdline,version}.{orig,patched}.o, and
# kdev.tar.zst, the module build tree (the built tree itself stays in OUT/tree).
#
#   verify/kernel/rebuild-assets.sh [OUT]
#   KLP_KERNEL_ASSETS=OUT/.. cargo test --release --test kernel_boot
#
# KLP_CONFIG=verify/kernel/6.12-def.config (and OUT ending in 6.12-def)
# rebuilds the defconfig kernel the same way (about 15 minutes).
#
# Steps (as in the README of ../shared/kernel): install the toolchain and
# linux-source-6.12; unpack; make vmlinux.lds.h always merge .text.*/.data.*/
# .bss.* (the one-line change; without it -ffunction-sections leaves 18,000
# orphan sections and the kernel hangs at boot); configure with the kernel's
# own config (verify/kernel/6.12-slim.config, a copy of ../shared's);
# build with -ffunction-sections -fdata-sections;
# save; apply demo.patch; rebuild; save the patched objects.
# About 5-10 minutes on 2 cores, plus the download.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-kernel-assets/6.12-slim}" && cd "${1:-kernel-assets/6.12-slim}" && pwd)
tree=$out/tree
kcflags="-ffunction-sections -fdata-sections"
export KBUILD_BUILD_TIMESTAMP="2026-01-01 00:00:00" KBUILD_BUILD_USER=klp KBUILD_BUILD_HOST=klp

. "$here/prepare-tree.sh"

step build-orig
make -j"$(nproc)" KCFLAGS="$kcflags" bzImage modules > "$out/build-orig.log" 2>&1
cp arch/x86/boot/bzImage .config Module.symvers "$out/"
mv "$out/.config" "$out/config"
zstd -q -f vmlinux -o "$out/vmlinux.zst"
zstd -q -f vmlinux.o -o "$out/vmlinux.o.orig.zst"
cp fs/proc/cmdline.o "$out/cmdline.orig.o"
cp fs/proc/version.o "$out/version.orig.o"

step build-patched
patch -p1 --forward < "$here/demo.patch"
make -j"$(nproc)" KCFLAGS="$kcflags" bzImage > "$out/build-patched.log" 2>&1
zstd -q -f vmlinux.o -o "$out/vmlinux.o.patched.zst"
cp fs/proc/cmdline.o "$out/cmdline.patched.o"
cp fs/proc/version.o "$out/version.patched.o"
patch -p1 -R < "$here/demo.patch"
make -j"$(nproc)" KCFLAGS="$kcflags" bzImage > "$out/build-restore.log" 2>&1

step kdev
# The module build tree: every Makefile/Kconfig/Kbuild, the headers with the
# generated ones, scripts/ with its host programs, objtool, .config and
# Module.symvers.
staging=$(mktemp -d)
mkdir -p "$staging/kdev"
{
    find . -path ./tools -prune -o \( -name 'Makefile*' -o -name 'Kconfig*' -o -name 'Kbuild*' \) -type f -print
    find include arch/x86/include scripts -type f
    echo .config; echo Module.symvers; echo tools/objtool/objtool
} | sort -u | tar -cf - -T - | tar -xf - -C "$staging/kdev"
(cd "$staging" && tar -I 'zstd -19 -T0' -cf "$out/kdev.tar.zst" kdev)
rm -rf "$staging"

step done
echo "assets in $out (module build tree: $tree)"
