"""GRPCRoute through the real binary: grpcio clients, grpcio backends ``g1``..``g3`` (each answers with its name, the
method called and the metadata it saw) behind Services and EndpointSlices in the fake API server.

Covers method matches (exact service and method, service only, regular expression), header matches and the
precedence between them, header-modifier filters, weighted backendRefs, and the status written
back (Accepted, ResolvedRefs, UnsupportedValue for a filter a GRPCRoute cannot have here)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from gateway_support import backend_ref, gateway_class, listener, parent_conditions, route_rule
from gateway_support import gateway as gateway_obj
from harness import Gateway, free_port, wait_until
from kube_apiserver import FakeApiServer
from kube_support import config, service, slice_for


class GrpcBackend:
    """A grpcio server answering every unary method with JSON: its name, the method, the metadata seen."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []

        def handler(method: str) -> grpc.RpcMethodHandler:
            def unary(request: bytes, ctx: grpc.ServicerContext) -> bytes:
                self.calls.append(method)
                seen = {k: v for k, v in ctx.invocation_metadata() if isinstance(v, str)}
                return json.dumps({"name": name, "method": method, "seen": seen}).encode()
            return grpc.unary_unary_rpc_method_handler(unary)

        class Generic(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
                return handler(details.method)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[Generic()])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def grpc_backends() -> Iterator[dict[str, GrpcBackend]]:
    started = {name: GrpcBackend(name) for name in ("g1", "g2", "g3")}
    yield started
    for b in started.values():
        b.stop()


def grpc_route(name: str, rules: list[dict[str, Any]], hostnames: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": [{"name": "same-namespace", "namespace": "default"}], "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"kind": "GRPCRoute", "metadata": {"name": name, "namespace": "default", "generation": 1}, "spec": spec}


def method(service_: str | None = None, name: str | None = None, kind: str = "Exact",
           **headers: str) -> dict[str, Any]:
    out: dict[str, Any] = {"method": {"type": kind, **({"service": service_} if service_ else {}),
                                      **({"method": name} if name else {})}}
    if headers:
        out["headers"] = [{"name": k.replace("_", "-"), "value": v} for k, v in headers.items()]
    return out


def start(api: FakeApiServer, backends: dict[str, GrpcBackend], gateway_: Callable[..., Gateway], tmp_path: Any,
          *routes: dict[str, Any]) -> Gateway:
    web = free_port()
    for name, b in backends.items():
        api.apply(service(name, port=50051, port_name="grpc"), slice_for(name, [b.port], port_name="grpc"))
    api.apply(gateway_class(), gateway_obj("same-namespace", [listener("grpc", web)]), *routes)
    return gateway_(config(api, tmp_path, provider="gateway_api = true"), web=web)


class Caller:
    """Unary calls with raw bytes through the gateway, under one ``:authority``."""

    def __init__(self, gw: Gateway, authority: str = "a.test") -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{gw.port}", options=[("grpc.default_authority", authority)])

    def __call__(self, path: str, **metadata: str) -> dict[str, Any] | grpc.StatusCode:
        call = self.channel.unary_unary(path)
        try:
            reply, info = call.with_call(b"", metadata=tuple((k.replace("_", "-"), v) for k, v in metadata.items()),
                                         timeout=5)
        except grpc.RpcError as e:
            return e.code()
        return {**json.loads(reply), "initial": dict(info.initial_metadata())}

    def backend(self, path: str, **metadata: str) -> str | grpc.StatusCode:
        answer = self(path, **metadata)
        return answer["name"] if isinstance(answer, dict) else answer

    def close(self) -> None:
        self.channel.close()


def ref(name: str, weight: int | None = None) -> dict[str, Any]:
    return backend_ref(name, weight, port=50051)


def test_grpcroute_method_and_header_matches_follow_the_precedence(api, grpc_backends, gateway, tmp_path):
    gw = start(api, grpc_backends, gateway, tmp_path, grpc_route("matches", [
        route_rule([method("echo.Echo", "Unary")], ref("g1")),
        route_rule([method("echo.Echo")], ref("g2")),
        route_rule([method("echo.Echo", "Unary", x_version="three")], ref("g3")),
        route_rule([method(name="Sta.*", kind="RegularExpression")], ref("g3"))]))
    call = Caller(gw)
    wait_until(lambda: call.backend("/echo.Echo/Unary") == "g1", timeout=20, what="GRPCRoute served")
    assert [call.backend(p, **m) for p, m in (
        ("/echo.Echo/Unary", {}), ("/echo.Echo/Other", {}), ("/echo.Echo/Unary", {"x_version": "three"}),
        ("/health.Checker/Status", {}), ("/health.Checker/Check", {}), ("/echo.Echoes/Unary", {}))] == [
        "g1", "g2", "g3", "g3", grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNIMPLEMENTED]
    wait_until(lambda: parent_conditions(api.get("GRPCRoute", "matches", "default")) == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}, what="GRPCRoute status")
    listeners = api.get("Gateway", "same-namespace", "default")["status"]["listeners"]
    assert {k["kind"] for k in listeners[0]["supportedKinds"]} == {"HTTPRoute", "GRPCRoute"}
    call.close()


def test_grpcroute_filters_modify_metadata_both_ways(api, grpc_backends, gateway, tmp_path):
    headers = lambda kind, **spec: {"type": kind, kind[0].lower() + kind[1:]: spec}  # noqa: E731
    gw = start(api, grpc_backends, gateway, tmp_path, grpc_route("filters", [route_rule(
        None, ref("g1"), filters=[
            headers("RequestHeaderModifier", set=[{"name": "x-set", "value": "by-route"}], remove=["x-drop"]),
            headers("ResponseHeaderModifier", add=[{"name": "x-answer", "value": "42"}])])],
        hostnames=["filters.test"]))
    call = Caller(gw, "filters.test")
    wait_until(lambda: call.backend("/any.Service/Call") == "g1", timeout=20, what="filtered GRPCRoute served")
    answer = call("/any.Service/Call", x_set="client", x_drop="gone", x_kept="kept")
    assert isinstance(answer, dict)
    assert answer["seen"]["x-set"] == "by-route" and "x-drop" not in answer["seen"]
    assert answer["seen"]["x-kept"] == "kept" and answer["initial"]["x-answer"] == "42"
    call.close()


def test_grpcroute_weighted_backends_split_within_5_percent(api, grpc_backends, gateway, tmp_path):
    gw = start(api, grpc_backends, gateway, tmp_path,
               grpc_route("weighted", [route_rule(None, ref("g1", 3), ref("g2", 1), ref("g3", 0))]))
    call = Caller(gw)
    wait_until(lambda: isinstance(call("/w.W/Call"), dict), timeout=20, what="weighted GRPCRoute served")
    counts = {"g1": 0, "g2": 0, "g3": 0}
    for _ in range(400):
        counts[call.backend("/w.W/Call")] += 1
    assert abs(counts["g1"] - 300) <= 20 and abs(counts["g2"] - 100) <= 20 and counts["g3"] == 0, counts
    call.close()


def test_grpcroute_bad_refs_and_unsupported_filters_are_reported(api, grpc_backends, gateway, tmp_path):
    # RequestMirror is HTTPRoute-only: the mirroring service sends its copies as HTTP/1.1
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": ref("g2")}}
    gw = start(api, grpc_backends, gateway, tmp_path,
               grpc_route("missing", [route_rule(None, ref("nowhere"))], hostnames=["missing.test"]),
               grpc_route("mirror", [route_rule(None, ref("g1"), filters=[mirror])], hostnames=["mirror.test"]),
               grpc_route("fine", [route_rule(None, ref("g1"))], hostnames=["fine.test"]))
    fine, missing, mirrored = Caller(gw, "fine.test"), Caller(gw, "missing.test"), Caller(gw, "mirror.test")
    wait_until(lambda: fine.backend("/f.F/Call") == "g1", timeout=20, what="the good GRPCRoute served")
    assert missing.backend("/f.F/Call") == grpc.StatusCode.UNKNOWN         # 500: the rule's backend is unresolved
    assert mirrored.backend("/f.F/Call") == grpc.StatusCode.UNIMPLEMENTED  # not accepted: serves nothing
    wait_until(lambda: parent_conditions(api.get("GRPCRoute", "missing", "default")) == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")}, what="missing status")
    wait_until(lambda: parent_conditions(api.get("GRPCRoute", "mirror", "default")).get("Accepted")
               == ("False", "UnsupportedValue"), what="mirror status")
    for c in (fine, missing, mirrored):
        c.close()
