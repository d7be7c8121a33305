"""Print the gateway config used by ``loadtest/bench`` for a profile (``plain``, ``full``, ``weighted``,
``served`` or ``outliers``).

The gateway listens on 127.0.0.1:8090 and proxies to the reference origin on 127.0.0.1:9001, as
``shared/bench/run_anchors.sh`` expects. The admin API moves to 127.0.0.1:9190 to stay clear of other tools.
"""

from __future__ import annotations

import sys

HEAD = """
[entrypoints.web]
address = "127.0.0.1:8090"
[admin]
address = "127.0.0.1:9190"
[services.origin.load_balancer]
servers = [{url = "http://127.0.0.1:9001"}]
"""

PLAIN = HEAD + """
[routers.all]
rule = "PathPrefix(`/`)"
service = "origin"
"""


def full() -> str:
    """50 routers with host and path rules; the benchmark's requests match the last-defined catch-all."""
    parts = [HEAD]
    for i in range(49):
        parts.append(f"""
[routers.r{i}]
rule = "Host(`svc{i}.example.com`) && PathPrefix(`/api/v{i}`)"
service = "origin"
""")
    parts.append("""
[routers.main]
rule = "Host(`127.0.0.1`) && (PathPrefix(`/small`) || PathPrefix(`/big`))"
service = "origin"
middlewares = ["set-headers", "limit"]

[middlewares.set-headers]
type = "headers"
request_headers = {X-Gateway = "a3s"}
response_headers = {X-Served-By = "a3s-gateway"}

[middlewares.limit]
type = "rate-limit"
rate = 10000000
burst = 10000000
""")
    return "".join(parts)


# Every request goes through two levels of weighted services before reaching a load balancer (compare with
# ``plain``: the budget is 1 µs more per request, loadtest/hotpath.py).
WEIGHTED = HEAD + """
[routers.all]
rule = "PathPrefix(`/`)"
service = "split"
[services.split.weighted]
services = [{name = "stable", weight = 9}, {name = "canary", weight = 1}]
[services.stable.weighted]
services = [{name = "origin", weight = 1}, {name = "origin-b", weight = 1}]
[services.canary.weighted]
services = [{name = "origin", weight = 1}]
[services.origin-b.load_balancer]
servers = [{url = "http://127.0.0.1:9001"}]
"""

# A served revision with a ready instance (the reference origin) and a concurrency limit, so every request is
# admitted by the activator's claim-then-verify (compare with ``plain``: the budget is 2 µs more per request,
# loadtest/hotpath.py, which fills the revision's ready instance in as the master's controller would).
SERVED = HEAD + """
[routers.all]
rule = "PathPrefix(`/`)"
service = "fn"
[services.fn.serving]
[services.fn.serving.revisions.v1]
executor = "process"
container_concurrency = 100
process = {command = "origin --port {port}", ports = "9001-9010"}
"""

# ``plain`` with Envoy's outlier detection on the load balancer, both streaks and the panic threshold on (compare
# with ``plain``, whose load balancer has the default passive health).
OUTLIERS = PLAIN + """
[services.origin.load_balancer.outlier_detection]
consecutive_5xx = 5
consecutive_gateway_failure = 5
healthy_panic_threshold = 50
"""

PROFILES = {"plain": lambda: PLAIN, "full": full, "weighted": lambda: WEIGHTED, "served": lambda: SERVED,
            "outliers": lambda: OUTLIERS}


def main() -> None:
    profile = sys.argv[1] if len(sys.argv) > 1 else "plain"
    if profile not in PROFILES:
        sys.exit(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    print(PROFILES[profile]())


if __name__ == "__main__":
    main()
