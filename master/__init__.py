"""The control plane, the ``a3s-gateway`` binary: the command line (``cli``), the lifecycle (``gateway``), worker
supervision (``arbiter``), socket ownership (``sockets``), compiling configs into generations (``generations``),
the admin API (``admin``), metrics aggregation (``metrics``), ACME (``acme``) and the work done once per node:
``providers/`` (where configuration comes from) and ``probes/`` (health checks and model probes)."""
