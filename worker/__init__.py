"""The data plane, one process per worker slot: ``process`` (the worker's loop and generation swap), ``exchange``
(one request/response and the steps every protocol shares), the wire protocols (``handover``, ``http1``,
``http2/``), ``upstream/`` (the backend sides), ``router``, ``chain`` and ``middlewares/``, ``services/``,
``proxy/`` (WebSocket, TCP, UDP, gRPC status mapping), ``limits``, ``tls``, ``responses`` and
``observability/``."""
