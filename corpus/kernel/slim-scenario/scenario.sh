#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Run by the test initramfs's /init in each phase (before, patched, disabled).
# drop_caches_sysctl_handler keeps a function-local `static int stfu`: writing
# 4 before the patch sets it in the running kernel; the patched handler prints
# it, so "stfu=4" shows the patch uses the running kernel's instance, not a
# fresh copy. m_show (fs/namespace.c, the second m_show in vmlinux after
# kernel/module/procfs.c's) calls the new mounts_klp_note(): its lines appear
# in /proc/mounts only if sympos picked the right m_show.
phase=$1
say() { echo "KLP-TEST: $*"; }
[ "$phase" = before ] && echo 4 > /proc/sys/vm/drop_caches
echo 1 > /proc/sys/vm/drop_caches
say "$phase mounts-marker: $(grep -c '^# klp-scenario' /proc/mounts)"
say "$phase drop_caches-lines: $(dmesg | grep -c 'klp-scenario: drop_caches')"
say "$phase drop_caches-last: $(dmesg | grep 'klp-scenario: drop_caches' | tail -1 | sed 's/^\[[^]]*\] //')"
