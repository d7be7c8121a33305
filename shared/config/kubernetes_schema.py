"""The ``providers.kubernetes`` table: which cluster, what to watch, and how the gateway reports back.

Defaults make a gateway that runs in a cluster with the shipped manifests (``packaging/kubernetes/``) work
without any of these keys: in-cluster credentials, every namespace, the ``a3s-gateway`` IngressClass of
controller ``a3s.io/ingress-controller``, status written by the Lease holder.
"""

from __future__ import annotations

from .schema import Bool, Duration, Field, Int, ListOf, Nullable, Str, Table

STATUS = Table(
    {
        "enabled": Field(Bool(), True),
        # what Ingress .status.loadBalancer.ingress says: an address (IP or hostname), or the addresses of a
        # published Service ("namespace/name", its own .status.loadBalancer)
        "published_address": Field(Nullable(Str(nonempty=True))),
        "published_service": Field(Nullable(Str(nonempty=True))),
    }
)

LEADER_ELECTION = Table(
    {
        "enabled": Field(Bool(), True),
        "namespace": Field(Str(nonempty=True), "default"),
        "name": Field(Str(nonempty=True), "a3s-gateway"),
        "lease_duration": Field(Duration(), 15.0),
        "identity": Field(Nullable(Str(nonempty=True))),      # default: hostname and pid
    }
)

KUBERNETES = Table(
    {
        "kubeconfig": Field(Nullable(Str(nonempty=True))),
        "context": Field(Nullable(Str(nonempty=True))),
        "service_account_dir": Field(Nullable(Str(nonempty=True))),
        "namespaces": Field(ListOf(Str(nonempty=True)), []),     # [] = all namespaces
        "label_selector": Field(Nullable(Str(nonempty=True))),    # equality terms: "a=b,c"
        "throttle": Field(Duration(), 2.0),                       # rebuilds wait for this much quiet
        "ingress_class": Field(Str(nonempty=True), "a3s-gateway"),
        "ingress_controller": Field(Str(nonempty=True), "a3s.io/ingress-controller"),
        "entrypoints": Field(ListOf(Str(nonempty=True)), []),    # routers' entrypoints ([] = all)
        "gateway_api": Field(Bool(), False),                      # watch the Gateway API kinds (their CRDs needed)
        "gateway_controller": Field(Str(nonempty=True), "a3s.io/gateway-controller"),
        "crd": Field(Bool(), False),                              # watch our a3s.io Route CRD (installed)
        "certs_dir": Field(Str(nonempty=True), "/var/lib/a3s-gateway/kubernetes"),
        "status": Field(STATUS, {}),
        "leader_election": Field(LEADER_ELECTION, {}),
        "max_wait": Field(Int(minimum=1), 5),                     # a rebuild waits at most max_wait × throttle
    }
)
