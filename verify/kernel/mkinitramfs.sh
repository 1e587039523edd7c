#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# usage: mkinitramfs.sh OUT.cpio.gz [--scenario SCRIPT] [MODULE.ko...]
# A busybox initramfs with verify/kernel/init.sh as /init. Needs busybox-static, cpio, gzip.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1; shift
scenario=""
if [ "${1:-}" = --scenario ]; then scenario=$2; shift 2; fi
bb=/bin/busybox
file -L "$bb" 2>/dev/null | grep -q 'statically linked' || { echo "mkinitramfs: needs busybox-static (/bin/busybox)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/modules"
cp "$bb" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$here/init.sh" "$root/init"
chmod +x "$root/init"
[ -n "$scenario" ] && { cp "$scenario" "$root/scenario.sh"; chmod +x "$root/scenario.sh"; }
for m in "$@"; do cp "$m" "$root/modules/"; done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out"
