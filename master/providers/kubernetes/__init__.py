"""The Kubernetes provider: Ingress v1 and IngressClass, the Gateway API v1, our Route CRD, backends from
EndpointSlices, TLS from Secrets, status written back by the Lease holder.

One module per concept: ``client`` (which cluster), ``watch`` (list + watch into per-kind stores),
``ingress`` (Ingress → routers/services), ``gateway`` (Gateway API → routers/services/middlewares and their
status), ``crd`` (our Route CRD → the tables it holds), ``endpoints`` (Service port → servers), ``tls``
(Secrets → files), ``status`` (leader election and status writes), ``provider`` (debounced rebuilds,
validation per object).
"""

from .provider import KubernetesProvider, merge

__all__ = ["KubernetesProvider", "merge"]
