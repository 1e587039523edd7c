#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# /init of the test initramfs: load every module in /modules, wait for each
# live patch's transition, show /proc/cmdline and /proc/version patched,
# run /scenario.sh if present, disable the patches, show them again, unload
# the modules, print the kernel log, power off. Lines for the test start
# with "KLP-TEST: ".
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
say() { echo "KLP-TEST: $*"; }
wait_transition() { # dir, max tenths of a second
    i=0
    while [ -d "$1" ] && [ "$(cat "$1/transition" 2>/dev/null)" = 1 ] && [ $i -lt "$2" ]; do sleep 0.1; i=$((i+1)); done
}
say "userspace reached"
say "cpus: $(grep -c ^processor /proc/cpuinfo)"
say "before cmdline: $(cat /proc/cmdline)"
say "before version: $(tr '\n' ' ' < /proc/version)"
[ -x /scenario.sh ] && /scenario.sh before
for m in /modules/*.ko; do
    [ -e "$m" ] || continue
    if insmod "$m"; then say "insmod ok $(basename "$m")"; else say "insmod refused $(basename "$m")"; fi
done
patches=""
for p in /sys/kernel/livepatch/*; do
    [ -d "$p" ] || continue
    patches="$patches $(basename "$p")"
    wait_transition "$p" 600
    say "LIVEPATCH $(basename "$p") enabled=$(cat "$p/enabled") transition=$(cat "$p/transition")"
done
say "patched cmdline: $(cat /proc/cmdline)"
say "patched version: $(tr '\n' ' ' < /proc/version)"
[ -x /scenario.sh ] && /scenario.sh patched
for p in /sys/kernel/livepatch/*; do [ -d "$p" ] && echo 0 > "$p/enabled"; done
for p in /sys/kernel/livepatch/*; do
    wait_transition "$p" 600
    i=0; while [ -d "$p" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    [ -d "$p" ] && say "LIVEPATCH $(basename "$p") still present after disable"
done
say "disabled cmdline: $(cat /proc/cmdline)"
say "disabled version: $(tr '\n' ' ' < /proc/version)"
[ -x /scenario.sh ] && /scenario.sh disabled
# A livepatch's sysfs name is its module's name.
for n in $patches; do
    grep -q "^$n " /proc/modules || continue
    if rmmod "$n"; then say "rmmod ok $n"; else say "rmmod failed $n"; fi
done
say "dmesg begin"
dmesg
say "dmesg end"
say "done"
poweroff -f
