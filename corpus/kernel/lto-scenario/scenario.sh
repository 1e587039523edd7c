#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Run by the test initramfs's /init in each phase (before, patched, disabled).
# scenario.patch makes proc_taint() (kernel/sysctl.c) log "klp-lto: taint N
# STRING" on each read of /proc/sys/kernel/tainted, with print_tainted() of
# kernel/panic.c, which ThinLTO inlines: the patched code calls panic.c's
# promoted _print_tainted.llvm.<hash> and reads its promoted
# tainted_mask.llvm.<hash>.
phase=$1
say() { echo "KLP-TEST: $*"; }
taint=$(cat /proc/sys/kernel/tainted)
say "$phase taint: $taint"
say "$phase taint-lines: $(dmesg | grep -c 'klp-lto: taint')"
say "$phase taint-last: $(dmesg | grep 'klp-lto: taint' | tail -n 1 | sed 's/^\[[^]]*\] //')"
