"""What a router's service does in the worker once the chain has run, one module per concept: picking a backend
(``balancer``: the load-balancing strategies), keeping a client or a conversation on one backend (``sticky``,
``affinity``, both shared by every worker through the plane) and reusing keep-alive connections to the backend
picked (``upstream_pool``)."""
