"""The allocator setting: large blocks come from the reusable heap, not fresh mmaps, in threads too; opt-out honoured."""

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, ctypes.util, sys
import torch
from shiftalign.runtime import reuse_freed_memory
applied = reuse_freed_memory()

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblkhd
x = torch.empty(64 * 2**20 // 4)  # a 64 MB block, above glibc's largest mmap threshold
during = libc.mallinfo2().hblkhd
in_thread = {}
import threading  # a thread's arena cannot grow past 64 MB without mmap: glibc must fall back to the main heap
t = threading.Thread(target=lambda: in_thread.update(total=float(torch.ones(2**26).sum())))
t.start(); t.join()
assert in_thread["total"] == 2**26
print(int(applied), int(during - before >= 64 * 2**20))
"""


def _probe(env_extra: dict) -> tuple[int, int]:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    applied, mmapped = out.stdout.split()
    return int(applied), int(mmapped)


def _glibc_with_mallinfo2() -> bool:
    name, version = platform.libc_ver()
    return platform.system() == "Linux" and name == "glibc" and tuple(map(int, version.split(".")[:2])) >= (2, 33)


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="glibc >= 2.33 only (mallinfo2)")
def test_large_blocks_come_from_the_heap_unless_opted_out():
    assert _probe({"SHIFTALIGN_MALLOC": "reuse"}) == (1, 0)  # applied; the 64 MB block is not a fresh mmap
    assert _probe({"SHIFTALIGN_MALLOC": "system"}) == (0, 1)  # glibc as it comes: mmapped
