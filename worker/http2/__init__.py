"""The HTTP/2 server side: ``server`` (``H2Server``, one per connection), ``stream`` (``Stream``, one per request,
the ``Downstream`` of its exchange), ``fields`` (what a received field may be, and the request it makes),
``endpoint`` (the h2 state machine with flow-controlled outboxes, shared with ``upstream/http2.py``) and
``field_coding`` (the HPACK coders both sides install)."""

from .server import H2Server

__all__ = ["H2Server"]
