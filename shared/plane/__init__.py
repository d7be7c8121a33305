"""The shared-memory state plane: one gateway node, not N independent workers.

The master creates the plane before it spawns workers; workers (fork+exec) attach by name. Everything
that must hold across workers lives here: in-flight counts for least-connections, request counters,
backend health (active + passive), node-wide rate limits, circuit breakers and sticky sessions, worker
heartbeats. ``Plane`` is the only API over it; see ``plane.py`` for the lifecycle and each module for its
segment's layout and invariants (``segments``, ``layout``, ``slots``, ``workers``, ``counters``,
``health``, ``ratelimit``, ``breaker``, ``sticky``, ``names``, ``locks``).
"""

from .errors import PlaneError
from .layout import PlaneLayout
from .plane import Plane, segment_sizes
from .slots import SlotAllocator, SlotAssignment

__all__ = ["Plane", "PlaneError", "PlaneLayout", "SlotAllocator", "SlotAssignment", "segment_sizes"]
