#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# usage: mkinitramfs.sh OUT.cpio.gz [--scenario SCRIPT] [--bin PROGRAM]... [MODULE.ko...]
# A busybox initramfs with verify/kernel/init.sh as /init. Needs busybox-static, cpio, gzip.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1; shift
scenario=""
bins=()
while [ $# -gt 0 ]; do
    case $1 in
        --scenario) scenario=$2; shift 2 ;;
        --bin) bins+=("$2"); shift 2 ;;
        *) break ;;
    esac
done
bb=/bin/busybox
# Static: it is the initramfs's only program (a dynamic one has PT_INTERP).
{ [ -x "$bb" ] && ! readelf -lW "$bb" | grep -q INTERP; } || { echo "mkinitramfs: needs busybox-static (/bin/busybox)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/modules"
cp "$bb" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$here/init.sh" "$root/init"
chmod +x "$root/init"
[ -n "$scenario" ] && { cp "$scenario" "$root/scenario.sh"; chmod +x "$root/scenario.sh"; }
for b in "${bins[@]}"; do cp "$b" "$root/bin/"; done
for m in "$@"; do cp "$m" "$root/modules/"; done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out"
