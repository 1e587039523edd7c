#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Run by the test initramfs's /init in each phase (before, patched, disabled).
# ../shared/kernel/6.12-def/global.patch makes the global ksys_sync() call the
# new global klp_sync_note(), which logs "klp-global: sync call N".
phase=$1
say() { echo "KLP-TEST: $*"; }
sync
sync
say "$phase sync-lines: $(dmesg | grep -c 'klp-global: sync call')"
say "$phase sync-last: $(dmesg | grep 'klp-global: sync call' | tail -n 1 | sed 's/^\[[^]]*\] //')"
