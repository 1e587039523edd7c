#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Diff every kpatch pair, the 6.12 kernel pairs (vmlinux.o with and without
# --symvers/--parent, the cmdline/version units, the ThinLTO vmlinux.o, the
# global-function pair and units) and our scenario objects with two klp
# binaries, and compare what each printed (stdout and stderr), its exit
# status and its OUT.o, byte for byte. For refactorings that must not change any output:
#
#   verify/compare-outputs.sh OLD/klp NEW/klp [WORK_DIR]
set -uo pipefail
shopt -s nullglob
old=$1; new=$2; work=${3:-$(mktemp -d)}
here=$(cd "$(dirname "$0")/.." && pwd)
shared=$here/../shared; C=$shared/corpus/kpatch-x86_64; K=$shared/kernel
mkdir -p "$work/k"
n=0; same=0
run() { # name orig patched args...
    local name=$1 o=$2 p=$3; shift 3
    "$old" diff "$o" "$p" "$work/$name.old.o" "$@" > "$work/$name.old.txt" 2>&1; echo "rc=$?" >> "$work/$name.old.txt"
    "$new" diff "$o" "$p" "$work/$name.new.o" "$@" > "$work/$name.new.txt" 2>&1; echo "rc=$?" >> "$work/$name.new.txt"
    sed -i "s|$work/$name.old.o|OUT|; s|$work/$name.new.o|OUT|" "$work/$name.old.txt" "$work/$name.new.txt"
    n=$((n+1))
    if cmp -s "$work/$name.old.txt" "$work/$name.new.txt" \
        && { [ ! -e "$work/$name.old.o" ] && [ ! -e "$work/$name.new.o" ] || cmp -s "$work/$name.old.o" "$work/$name.new.o"; }; then
        same=$((same+1))
    else
        echo "DIFFERS: $name (see $work/$name.*)"
    fi
}
rm -f "$work"/*.o
for o in "$C"/*.ORIG.o; do b=$(basename "$o" .ORIG.o); run "kp-$b" "$o" "$C/$b.PATCHED.o" --objname vmlinux; done
for k in slim def; do
    d=$K/6.12-$k
    [ -d "$d" ] || { echo "no $d"; continue; }
    for f in vmlinux.o.orig vmlinux.o.patched vmlinux; do
        [ -f "$work/k/$k.$f" ] || zstd -dqf "$d/$f.zst" -o "$work/k/$k.$f"
    done
    args=(--objname vmlinux --symvers "$d/Module.symvers" --parent "$work/k/$k.vmlinux")
    run "$k-vmlinux" "$work/k/$k.vmlinux.o.orig" "$work/k/$k.vmlinux.o.patched" "${args[@]}"
    run "$k-vmlinux-noexp" "$work/k/$k.vmlinux.o.orig" "$work/k/$k.vmlinux.o.patched" --objname vmlinux
    for u in cmdline version; do run "$k-$u" "$d/$u.orig.o" "$d/$u.patched.o" "${args[@]}"; done
done
# The clang ThinLTO pair (promoted statics, another compiler's code).
d=$K/6.12-lto
if [ -d "$d" ]; then
    for f in vmlinux.o.orig vmlinux.o.patched vmlinux; do
        [ -f "$work/k/lto.$f" ] || zstd -dqf "$d/$f.zst" -o "$work/k/lto.$f"
    done
    run lto-vmlinux "$work/k/lto.vmlinux.o.orig" "$work/k/lto.vmlinux.o.patched" \
        --objname vmlinux --symvers "$d/Module.symvers" --parent "$work/k/lto.vmlinux"
else
    echo "no $d"
fi
d=$K/6.12-def
if [ -f "$d/vmlinux.o.global.zst" ]; then
    [ -f "$work/k/def.vmlinux.o.global" ] || zstd -dqf "$d/vmlinux.o.global.zst" -o "$work/k/def.vmlinux.o.global"
    args=(--objname vmlinux --symvers "$d/Module.symvers" --parent "$work/k/def.vmlinux")
    run def-global "$work/k/def.vmlinux.o.orig" "$work/k/def.vmlinux.o.global" "${args[@]}"
    run def-sync "$d/sync.orig.o" "$d/sync.patched.o" "${args[@]}"
fi
for s in "$here"/corpus/kernel/*-scenario; do
    for o in "$s"/*.orig.o; do b=$(basename "$o" .orig.o); run "scen-$b" "$o" "$s/$b.patched.o" --objname vmlinux; done
done
echo "$same of $n pairs: same report, exit status and OUT.o bytes"
[ "$n" -gt 0 ] && [ "$same" -eq "$n" ]
