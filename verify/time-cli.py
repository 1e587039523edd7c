#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Time `klp diff` on a kernel vmlinux.o pair with several klp binaries,
# their runs interleaved (these machines' speed drifts within minutes, so
# only runs side by side compare): wall (from fork to wait, in ms), CPU
# (user + system) and peak RSS of each run as its `--stats` give them
# (the process that did the work), medians printed per binary,
# and the CPU time the hypervisor took away meanwhile ("steal").
#
#   verify/time-cli.py RUNS KERNEL plain|extras OLD/klp NEW/klp ...
#
# KERNEL is a directory of target/bench-assets (6.12-def, 6.12-slim; `cargo
# bench` fills it); `extras` adds --symvers (../shared/kernel/KERNEL's
# Module.symvers) and --parent.
import os
import re
import statistics as st
import subprocess
import sys
import time


def steal():
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def main():
    if len(sys.argv) < 5 or sys.argv[3] not in ("plain", "extras"):
        sys.exit(__doc__ or "usage: time-cli.py RUNS KERNEL plain|extras KLP...")
    runs, kernel, mode, bins = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    d = os.path.join(here, "target/bench-assets", kernel)
    symvers = os.path.join(os.path.dirname(here), "shared/kernel", kernel, "Module.symvers")
    extra = ["--symvers", symvers, "--parent", f"{d}/vmlinux"] if mode == "extras" else []
    out = f"/tmp/time-cli-{os.getpid()}.o"
    seen = {b: [] for b in bins}
    before = steal()
    for _ in range(runs):
        for b in bins:
            args = [b, "diff", "--stats", "--objname", "vmlinux", *extra]
            args += [f"{d}/vmlinux.o.orig", f"{d}/vmlinux.o.patched", out]
            # A pause, as between a user's commands: `klp diff` returns
            # before its teardown (src/detach.rs), which must not land in
            # the next run.
            time.sleep(0.3)
            start = time.perf_counter()
            child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - start
            if status != 0:
                sys.exit(f"{b} exited with status {status >> 8}")
            # CPU and peak RSS as the working process saw them: wait4 sees
            # only the parent that waits for it. Builds from before the
            # child printed no CPU time, and did all in the process waited for.
            stats = child.stderr.read().decode()
            cpu = re.search(r" ([0-9.]+) s CPU,", stats)
            cpu_ms = float(cpu.group(1)) * 1e3 if cpu else (usage.ru_utime + usage.ru_stime) * 1e3
            rss = re.search(r"peak RSS ([0-9]+) MB", stats)
            seen[b].append((wall * 1e3, cpu_ms, float(rss.group(1)) if rss else usage.ru_maxrss / 1024))
    for b, v in seen.items():
        walls = sorted(x[0] for x in v)
        print(
            f"{b}: {len(v)} runs, wall min {walls[0]:.0f} median {st.median(walls):.0f} ms,"
            f" CPU median {st.median(x[1] for x in v):.0f} ms, peak RSS {st.median(x[2] for x in v):.0f} MB"
        )
    print(f"steal during the runs: {(steal() - before) / os.sysconf('SC_CLK_TCK'):.2f} s")
    if os.path.exists(out):
        os.remove(out)


main()
