# SPDX-License-Identifier: GPL-2.0-or-later
#
# Sourced by the scripts that build Linux 6.12 test kernels: the steps every
# one of them starts with. Needs $tree (where the source goes) and $here
# (this directory); KLP_CONFIG picks the configuration (default: slim).
# KLP_MAKE_FLAGS is given to every make (LLVM=1 for a clang kernel: without
# it olddefconfig would turn the clang-only options, LTO among them, off).

step() { echo "### $*"; }

step install
if ! [ -e /usr/src/linux-source-6.12.tar.xz ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-source-6.12 build-essential bc flex bison \
        libssl-dev libelf-dev cpio kmod zstd xz-utils dwarves
fi

step unpack
if ! [ -e "$tree/Makefile" ]; then
    mkdir -p "$tree"
    tar -xf /usr/src/linux-source-6.12.tar.xz -C "$tree" --strip-components=1
fi

step fix-lds
lds=$tree/include/asm-generic/vmlinux.lds.h
sed -i 's/^#if defined(CONFIG_LD_DEAD_CODE_DATA_ELIMINATION) || defined(CONFIG_LTO_CLANG)$/#if 1 \/* klp: always merge .text.* .data.* .bss.* *\//' "$lds"
grep -q '^#if 1 /\* klp: always merge' "$lds"

step config
cd "$tree"
# The exact configuration of the kernel under test (the README of
# ../shared/kernel says how it was made: tinyconfig plus what a live patch
# needs); KLP_CONFIG picks another, e.g. verify/kernel/6.12-def.config.
rm -f .config
cat "${KLP_CONFIG:-$here/6.12-slim.config}" > .config
make -s ${KLP_MAKE_FLAGS:-} olddefconfig
# The configuration must survive olddefconfig: a config for another
# compiler would silently become a different kernel.
# (pahole's version is whatever dwarves is installed; no BTF is built.)
config_of() { grep -v -e '^#' -e '^CONFIG_PAHOLE_VERSION=' "$1"; }
if ! diff <(config_of "${KLP_CONFIG:-$here/6.12-slim.config}") <(config_of .config) > /tmp/klp-config-diff.$$; then
    echo "olddefconfig changed the configuration (another compiler? KLP_MAKE_FLAGS=LLVM=1 for clang):" >&2
    head -20 /tmp/klp-config-diff.$$ >&2
    rm -f /tmp/klp-config-diff.$$
    exit 1
fi
rm -f /tmp/klp-config-diff.$$
grep -q '^CONFIG_LIVEPATCH=y' .config
