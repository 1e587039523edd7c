#!/usr/bin/env bash
# Rebuild the seed corpora in corpus/fuzz/<target>/ from our own objects
# only: corpus/objects, corpus/kernel/*/, the C cases of corpus/cases
# compiled with the kernel-like flags of verify/corpus_cases.rs, and the
# modules the tests build from them (diff, link with the skeleton as
# verify/common/module.rs does, with and without post-link).
# Needs gcc, ld and a release build of klp (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
klp=$root/target/release/klp
[ -x "$klp" ] || cargo build --release --bin klp
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

CFLAGS=(-O2 -ffunction-sections -fdata-sections -mcmodel=kernel -fno-pic -mno-red-zone -pg -mfentry
    -fno-asynchronous-unwind-tables -fno-stack-protector -w)
SKELETON_CFLAGS=(-c -O2 -DKLP_STANDALONE -ffunction-sections -fdata-sections -mcmodel=kernel -fno-pic -mno-red-zone -w)

out=$root/corpus/fuzz
rm -rf "$out/parse" "$out/post_link" "$out/check" "$out/diff"
mkdir -p "$out/parse" "$out/post_link" "$out/check" "$out/diff"

# The pairs: name orig patched.
pairs=()
pairs+=("pktdemo corpus/objects/pktdemo.orig.o corpus/objects/pktdemo.patched.o")
for d in corpus/kernel/*/; do
    for o in "$d"*.orig.o; do
        [ -e "$o" ] || continue
        base=$(basename "$o" .orig.o)
        # The 140 KB objects are kept out: a seed that big slows every run.
        [ "$(stat -c %s "$o")" -le 65536 ] || continue
        pairs+=("$base $o ${o%.orig.o}.patched.o")
    done
done
for case in corpus/cases/*/; do
    name=$(basename "$case")
    mkdir -p "$work/src/$name"
    for side in orig patched; do
        cp "$case/$side.c" "$work/src/$name/$name.c"
        gcc -c "${CFLAGS[@]}" -o "$work/$name.$side.o" "$work/src/$name/$name.c"
    done
    pairs+=("$name $work/$name.orig.o $work/$name.patched.o")
done

gcc "${SKELETON_CFLAGS[@]}" -o "$work/skeleton.o" src/module/skeleton/livepatch_skeleton.c

# diff seeds: split mode (flags 0: u32 length of the original, original, patched).
le32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)))"; }
for p in "${pairs[@]}"; do
    read -r name orig patched <<<"$p"
    cp "$orig" "$out/parse/$name.orig.o"
    cp "$patched" "$out/parse/$name.patched.o"
    # Other flags (v6.19 names, symvers and --parent) for the smaller pairs only.
    flag_sets="0"
    [ "$(stat -c %s "$patched")" -gt 8192 ] || flag_sets="0 2 12"
    for flags in $flag_sets; do
        { printf "\\x$(printf %02x $flags)"; le32 "$(stat -c %s "$orig")"; cat "$orig" "$patched"; } >"$out/diff/$name.split$flags"
    done
    # Modules: diff, link with the skeleton, post-link.
    for format in current v6.19; do
        m=$work/$name.$format
        mkdir -p "$m"
        if "$klp" diff "$orig" "$patched" "$m/out.o" --objname vmlinux --format "$format" >/dev/null 2>&1 && [ -e "$m/out.o" ]; then
            cp "$m/out.o" "$out/parse/$name.$format.out.o"
            ld -r -T verify/common/module.lds -o "$m/module.ko" "$work/skeleton.o" "$m/out.o"
            cp "$m/module.ko" "$out/post_link/$name.$format.ko"
            [ "$format" = v6.19 ] || cp "$m/module.ko" "$out/check/$name.$format.unconverted.ko"
            "$klp" post-link "$m/module.ko" >/dev/null
            cp "$m/module.ko" "$out/check/$name.$format.ko"
            [ "$name.$format" != pktdemo.current ] || cp "$m/module.ko" "$out/post_link/$name.$format.converted.ko"
            if [ "$format" = current ]; then
                cp "$m/module.ko" "$out/parse/$name.$format.ko"
            fi
        fi
    done
done
# diff seeds: edit mode (flags 1, then which pair of the harness's PAIRS), no edits yet.
for k in 0 1 2 3; do
    printf "\\x01\\x$(printf %02x $k)" >"$out/diff/pair$k.edit"
done
# diff seeds: edit mode on synthesized pairs (pick bit 7: the pair of seed pick & 0x7f).
for k in 0 1 2; do
    printf "\\x01\\x$(printf %02x $((128 + k)))" >"$out/diff/synth$k.edit"
done
# diff seeds: structured mode (flags bit 7; then functions, mutations and
# the synthesizer's choices), from a fixed pseudo-random stream.
python3 - "$out/diff" <<'PY'
import random, sys
rng = random.Random(14)
for i, flags in enumerate([0x80, 0x82, 0x84, 0x86, 0x80, 0x84, 0x82, 0x80]):
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(200, 1500)))
    with open(f"{sys.argv[1]}/structured{i}", "wb") as f:
        f.write(bytes([flags, rng.randrange(256), rng.randrange(256)]) + body)
PY
printf '0x0\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n0x1\tkvm_x\tarch/x86/kvm/kvm-intel\tEXPORT_SYMBOL_GPL\tKVM\n' >"$out/parse/Module.symvers"
du -sh --apparent-size "$out"/*
