"""The master's probes of backends, run once per node and published on the shared-memory plane:
``http`` (active HTTP health checks, ``load_balancer.health_check``), ``model`` (model/agent state probes,
``load_balancer.agent_health``) and ``reconcile`` (what both share: the reconcile loop run on every generation,
one task per probed service, a clean stop)."""
