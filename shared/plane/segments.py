"""Named POSIX shared-memory segments: create (pre-allocated), attach, unlink, and stale cleanup.

Naming: ``/a3s-gw.<master pid>.<segment>`` (or ``/a3s-gw.<master pid>.<tag>.<segment>`` when a process
creates more than one plane, e.g. in tests). The *prefix* ``a3s-gw.<pid>[.<tag>]`` is what the master hands
to workers; workers are fork+exec'd, so they attach by name, never by inheritance. On Linux a segment is the
file ``/dev/shm/<name without the slash>``.

Invariants:
- ``create`` reserves every byte up front with ``os.posix_fallocate`` (zeros written as a fallback), so a
  full /dev/shm fails *at create* with a ``PlaneError`` naming the size and /dev/shm. A sparse tmpfs page
  touched later with no space left would raise SIGBUS and kill the process instead.
- A fresh segment is all zeros, and every table in the plane is designed so that zero means "empty".
- Every view handed out starts at an 8-byte-aligned offset and has a whole number of 8-byte words
  (asserted): single aligned ``memoryview.cast('q')`` stores are one 8-byte ``memcpy`` in CPython, which is
  what keeps concurrent readers from seeing torn values (never ``struct.pack_into``: it memsets first).
- ``close`` releases every view before closing the mmap (an mmap with exported views cannot be closed).
"""

from __future__ import annotations

import errno
import mmap
import os

import posix_ipc

from .errors import PlaneError

PREFIX = "a3s-gw"
SHM_DIR = "/dev/shm"
_ZERO_CHUNK = b"\0" * (1 << 20)


def segment_name(prefix: str, segment: str) -> str:
    return f"/{prefix}.{segment}"


def prefix_pid(prefix: str) -> int | None:
    """The master pid encoded in a plane prefix or segment file name, or None if it is not one of ours."""
    parts = prefix.lstrip("/").split(".")
    if len(parts) < 2 or parts[0] != PREFIX or not parts[1].isdigit():
        return None
    return int(parts[1])


def _reserve(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
            raise
    os.ftruncate(fd, 0)
    left = size
    while left:
        n = os.write(fd, _ZERO_CHUNK[: min(left, len(_ZERO_CHUNK))])
        left -= n


class Segment:
    """One mapped segment. ``view(offset, nbytes, fmt)`` returns an aligned typed memoryview into it."""

    def __init__(self, name: str, shm: posix_ipc.SharedMemory, size: int, readonly: bool, keep_fd: bool):
        self.name = name
        self.size = size
        self.readonly = readonly
        prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
        self._mmap = mmap.mmap(shm.fd, size, mmap.MAP_SHARED, prot) if size else None
        self._buf = memoryview(self._mmap) if self._mmap is not None else None
        self._views: list[memoryview] = []
        self.fd: int | None = shm.fd if keep_fd else None
        if not keep_fd:
            shm.close_fd()

    @classmethod
    def create(cls, name: str, size: int, keep_fd: bool = False) -> Segment:
        try:
            shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=0)
        except posix_ipc.ExistentialError as e:
            raise PlaneError(f"shared-memory segment {name} already exists in {SHM_DIR}") from e
        except OSError as e:
            raise PlaneError(f"cannot create shared-memory segment {name} in {SHM_DIR}: {e}") from e
        try:
            if size:
                _reserve(shm.fd, size)
        except OSError as e:
            shm.close_fd()
            unlink(name)
            raise PlaneError(
                f"cannot reserve {size} bytes ({size / 2**20:.1f} MiB) for shared-memory segment {name} in "
                f"{SHM_DIR}: {e.strerror or e}. /dev/shm is too small: enlarge it (docker --shm-size, a k8s "
                f"emptyDir with medium: Memory) or shrink the plane layout (max_workers, table sizes)"
            ) from e
        return cls(name, shm, size, readonly=False, keep_fd=keep_fd)

    @classmethod
    def attach(cls, name: str, size: int | None = None, readonly: bool = False, keep_fd: bool = False) -> Segment:
        try:
            shm = posix_ipc.SharedMemory(name, 0)
        except posix_ipc.ExistentialError as e:
            raise PlaneError(f"shared-memory segment {name} does not exist (is the gateway running?)") from e
        except posix_ipc.PermissionsError as e:
            raise PlaneError(f"no permission to open shared-memory segment {name}") from e
        actual = shm.size
        if size is not None and actual != size:
            shm.close_fd()
            raise PlaneError(f"shared-memory segment {name} is {actual} bytes, expected {size}")
        return cls(name, shm, actual, readonly=readonly, keep_fd=keep_fd)

    def view(self, offset: int, nbytes: int, fmt: str = "q") -> memoryview:
        assert offset % 8 == 0, f"{self.name}: offset {offset} is not 8-byte aligned"
        assert nbytes % 8 == 0, f"{self.name}: length {nbytes} is not a whole number of 8-byte words"
        assert offset + nbytes <= self.size, f"{self.name}: view {offset}+{nbytes} past end {self.size}"
        assert self._buf is not None
        raw = self._buf[offset : offset + nbytes]
        v = raw.cast(fmt)
        assert v.itemsize == 8
        self._views += [raw, v]
        return v

    def close(self) -> None:
        for v in reversed(self._views):
            v.release()
        self._views.clear()
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def unlink(name: str) -> bool:
    """Unlink one segment; True if it existed."""
    try:
        posix_ipc.unlink_shared_memory(name)
        return True
    except posix_ipc.ExistentialError:
        return False


def list_ours() -> list[str]:
    """File names in /dev/shm that look like plane segments (``a3s-gw.<pid>...``)."""
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    return sorted(n for n in names if prefix_pid(n) is not None)


def process_start_time(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot (/proc/<pid>/stat field 22), or 0 if unknown.

    Stored in the header so ``cleanup_stale`` can tell a dead master whose pid was reused from a live one.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    try:
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
