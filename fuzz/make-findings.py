#!/usr/bin/env python3
"""Write the findings of issue 15 as inputs of the fuzz targets, into
corpus/fuzz/regressions/<target>/finding-*: each is our pktdemo pair with
a few fields of the patched object changed, in the `diff` target's edit
mode (see fuzz/src/lib.rs), or a changed object for `parse`.
verify/fuzz_regressions.rs replays them and checks what klp says."""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PATCHED = open(os.path.join(ROOT, "corpus/objects/pktdemo.patched.o"), "rb").read()


def u16(b, at): return struct.unpack_from("<H", b, at)[0]
def u32(b, at): return struct.unpack_from("<I", b, at)[0]
def u64(b, at): return struct.unpack_from("<Q", b, at)[0]


shoff, shnum, shstrndx = u64(PATCHED, 0x28), u16(PATCHED, 0x3C), u16(PATCHED, 0x3E)
headers = [shoff + 64 * i for i in range(shnum)]
names_at = u64(PATCHED, headers[shstrndx] + 24)


def section_name(h):
    at = names_at + u32(PATCHED, h)
    return PATCHED[at:PATCHED.index(b"\0", at)].decode()


def section(name):
    return next(i for i, h in enumerate(headers) if section_name(h) == name)


symtab = next(h for h in headers if u32(PATCHED, h + 4) == 2)
strtab = headers[u32(PATCHED, symtab + 40)]
sym_at, strings = u64(PATCHED, symtab + 24), u64(PATCHED, strtab + 24)


def symbol(name):
    for i in range(u64(PATCHED, symtab + 32) // 24):
        e = sym_at + 24 * i
        at = strings + u32(PATCHED, e)
        if PATCHED[at:PATCHED.index(b"\0", at)] == name.encode():
            return e
    raise KeyError(name)


def edit(at, width, value):
    """One edit of the patched side: width 1, 2, 4 or 8 bytes at `at`."""
    code = {1: 0, 2: 1, 4: 2, 8: 3}[width] << 1
    return bytes([code]) + struct.pack("<I", at) + struct.pack("<Q", value & (2**64 - 1))


def diff_input(*edits, flags=1):
    return bytes([flags, 0]) + b"".join(edits)  # edit mode, pair 0 (pktdemo)


csum = symbol("pkt_csum")
# The section symbol of .text.pkt_csum: what pkt_receive's call refers to.
section_symbol = next(
    sym_at + 24 * i
    for i in range(u64(PATCHED, symtab + 32) // 24)
    if PATCHED[sym_at + 24 * i + 4] & 0xF == 3 and u16(PATCHED, sym_at + 24 * i + 6) == section(".text.pkt_csum")
)
text = headers[section(".text.pkt_csum")]
findings = {
    # A function's st_size made huge: refused at read time.
    "huge-function-size": diff_input(edit(csum + 16, 8, 9 << 60)),
    # A section's sh_addralign made huge, or 2^64-1 (wrapped when rounded up).
    "huge-alignment": diff_input(edit(text + 48, 8, 1 << 40)),
    "alignment-that-wraps": diff_input(edit(text + 48, 8, 2**64 - 1)),
    # The st_shndx of the section symbol the changed function calls the new
    # one through, pointing at the symbol table or at a relocation section:
    # OUT.o had a second symbol table (names outside its string table) or a
    # RELA section applied to section 0.
    "reference-into-the-symbol-table": diff_input(edit(section_symbol + 6, 2, section(".symtab"))),
    "reference-into-a-relocation-section": diff_input(edit(section_symbol + 6, 2, section(".rela.text.pkt_receive"))),
    # The new function's section of a nonsense type: copied into OUT.o as is.
    "function-in-a-group-section": diff_input(edit(text + 4, 4, 17)),
    "function-in-a-hash-section": diff_input(edit(text + 4, 4, 5)),
    # A section name with a newline, in an error: one line.
    "newline-in-a-section-name": diff_input(
        edit(names_at + u32(PATCHED, text) + len(".text.pkt"), 1, ord("\n")), edit(text + 48, 8, 1 << 40)
    ),
}
out = os.path.join(ROOT, "corpus/fuzz/regressions")
os.makedirs(os.path.join(out, "diff"), exist_ok=True)
os.makedirs(os.path.join(out, "parse"), exist_ok=True)
for name, data in findings.items():
    open(os.path.join(out, "diff", "finding-" + name), "wb").write(data)
# `klp checksum` on a symbol one byte larger than its section.
bigger = bytearray(PATCHED)
struct.pack_into("<Q", bigger, csum + 16, u64(PATCHED, text + 32) + 1)
open(os.path.join(out, "parse", "finding-symbol-larger-than-its-section"), "wb").write(bigger)
