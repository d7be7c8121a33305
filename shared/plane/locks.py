"""Short fcntl byte-range locks for the plane's rare multi-writer transitions.

One lock file per plane: the zero-length ``locks`` segment. Lock *k* is byte *k* of that file, taken with
``fcntl.lockf(fd, LOCK_EX, 1, k)``; bytes past EOF are fine to lock. Ranges (see ``Plane``):

    [0, max_breakers)                              one lock per circuit breaker (trip, half-open claim)
    [max_breakers, + ratelimit buckets)            one stripe per rate-limit bucket (insert / evict)
    [..., + sticky buckets)                        one stripe per sticky bucket (bind / evict)
    [..., + token buckets)                         one stripe per token-meter bucket (ai.py)
    [..., + max_services)                          one per service's traffic record (traffic.py)
    [..., + max_services)                          one per service: its backends' ejections (health.py)

Why fcntl and not a semaphore: the kernel drops a process's record locks when it dies, so a worker that is
``kill -9``ed while holding one cannot deadlock the others (POSIX semaphores and ``multiprocessing.Lock``
stay taken forever). Costs: two syscalls (a few microseconds), which is why nothing takes one per request.

Caveats of POSIX record locks, which the plane respects:
- they belong to the *process*: a second acquire of the same byte in the same process succeeds at once
  (the gateway's workers are single-threaded event loops, and no await happens while a lock is held);
- closing *any* fd of the lock file in a process releases all of that process's locks on it, so the fd is
  opened once per ``Plane`` and closed only by ``Plane.close``;
- a holder killed in the middle of a multi-word update leaves the record half-written; every record
  written under a lock is also a seqlock whose sequence stays odd, and the next lock holder treats an odd
  record as free and rewrites it.
"""

from __future__ import annotations

import errno
import fcntl
import os


class RangeLocks:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def acquire(self, k: int, blocking: bool = True) -> bool:
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB, 1, k, os.SEEK_SET)
        except OSError as e:
            if not blocking and e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def release(self, k: int) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, k, os.SEEK_SET)

    def held(self, k: int) -> _Held:
        return _Held(self, k)


class _Held:
    __slots__ = ("k", "locks")

    def __init__(self, locks: RangeLocks, k: int) -> None:
        self.locks = locks
        self.k = k

    def __enter__(self) -> None:
        self.locks.acquire(self.k)

    def __exit__(self, *exc: object) -> None:
        self.locks.release(self.k)
