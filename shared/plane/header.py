"""The header segment: what a worker needs to attach, and the plane-wide words.

Layout (int64 words, segment ``header``, 4096 bytes):

    0  MAGIC            b"A3SGWPL1" as a little-endian int64; written last at create (attach checks it)
    1  VERSION          layout version of this module set
    2  MASTER_PID       pid of the creating master
    3  MASTER_START     its start time in clock ticks since boot (detects pid reuse in cleanup_stale)
    4  ROWS             1 + highest worker slot ever given to set_worker: readers sum rows [0, ROWS)
    5  FOLD_SEQ         seqlock word of fold_worker (odd while the master folds a dead worker's rows)
    6  SECRET0, 7 SECRET1   random 128-bit key for the table hash (keys cannot be crafted to collide)
    8  LAYOUT...        PlaneLayout fields in declaration order

Every word has one writer: the master. Workers only read.
"""

from __future__ import annotations

MAGIC = int.from_bytes(b"A3SGWPL1", "little", signed=True)
VERSION = 1
SIZE = 4096

MAGIC_W, VERSION_W, MASTER_PID, MASTER_START, ROWS, FOLD_SEQ, SECRET0, SECRET1, LAYOUT = range(9)
