#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Run by the test initramfs's /init in each phase (before, patched, disabled).
# Each patched function logs a "klp-def: <function>:" line when it runs: the
# four of drivers/char/mem.c are reached through a file_operations pointer,
# the global si_meminfo() (mm/show_mem.c) by a direct call.
phase=$1
say() { echo "KLP-TEST: $*"; }
count() { dmesg | grep -c "klp-def: $1"; }
cat /dev/null                                   # read_null: a jump label
echo 1 > /proc/sys/net/core/high_order_alloc_disable
cat /dev/null                                   # ... with its key enabled
echo 0 > /proc/sys/net/core/high_order_alloc_disable
say "$phase read_null-off: $(count 'read_null: key off')"
say "$phase read_null-on: $(count 'read_null: key on')"
echo hello > /dev/null                          # write_null: an alternative
say "$phase write_null: $(count write_null:)"
say "$phase read_zero-bytes: $(head -c 4096 /dev/zero | tr -d '\000' | wc -c)/$(head -c 4096 /dev/zero | wc -c)"
say "$phase read_zero: $(count read_zero:)"      # read_zero: a static call
# ... and clear_user()'s exception-table entry, faulting on an unmapped buffer.
say "$phase read_zero-efault: $(efault read /dev/zero)"
printf klp-full > /dev/full 2>/full.err         # write_full: an exception-table entry
say "$phase write_full: $(count "write_full: refused 'k'")"
# ... and its fixup: copying from an unmapped address must give EFAULT.
say "$phase write_full-efault: $(efault write /dev/full)"
# si_meminfo: a global function, called directly by /proc/meminfo (read once
# here, not through /dev/null); the patched one logs the MemTotal it computes.
total=$(grep '^MemTotal:' /proc/meminfo | tr -s ' ' | cut -d' ' -f2)
say "$phase si_meminfo-total: $total kB"
say "$phase si_meminfo: $(count "si_meminfo: $total kB")"
