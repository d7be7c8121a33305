"""Providers without processes: the discovery document contract, static-wins merging, DNS expansion."""

from __future__ import annotations

import pytest
from a3s_gateway.master.probes.http import parse_status_range
from a3s_gateway.master.providers.discovery import DocumentError, Seed, check_document, contribution
from a3s_gateway.master.providers.dns import DnsResolver, is_name, names_in


def test_document_defaults_and_errors():
    doc = check_document({"name": "auth", "version": "1.2.0", "routes": [{"rule": "PathPrefix(`/auth`)"}]})
    assert doc["health_path"] == "/health" and doc["weight"] == 1
    assert doc["routes"] == [{"rule": "PathPrefix(`/auth`)", "middlewares": [], "priority": None}]
    for bad in [[], {"version": "1"}, {"name": "a"}, {"name": "a", "version": "1", "routes": [{}]},
                {"name": "a b", "version": "1"}, {"name": "a", "version": "1", "weight": -1},
                {"name": "a", "version": "1", "health_path": "health"}]:
        with pytest.raises(DocumentError):
            check_document(bad)


def test_static_names_win_and_replicas_merge():
    a = Seed("http://10.0.0.1:80", doc=check_document({"name": "api", "version": "1",
                                                       "routes": [{"rule": "Path(`/a`)"}, {"rule": "Path(`/b`)"}]}))
    b = Seed("http://10.0.0.2:80", doc=check_document({"name": "api", "version": "1", "weight": 3,
                                                       "routes": [{"rule": "Path(`/a`)"}]}))
    c = Seed("http://10.0.0.3:80", doc=check_document({"name": "static", "version": "1",
                                                       "routes": [{"rule": "Path(`/s`)"}]}))
    out = contribution([a, b, c], static_routers={"api-1"}, static_services={"static"})
    assert out["services"] == {"api": {"load_balancer": {"servers": [
        {"url": "http://10.0.0.1:80", "weight": 1}, {"url": "http://10.0.0.2:80", "weight": 3}]}}}
    assert set(out["routers"]) == {"api"}


def test_dns_expansion_keeps_ports_and_weights():
    r = DnsResolver({"refresh_secs": 30, "nameservers": ["127.0.0.1:53"], "timeout": 1.0}, None)  # type: ignore[arg-type]
    services = {"s": {"load_balancer": {"servers": [{"url": "http://api.test:8080", "weight": 2},
                                                     {"url": "http://_web._tcp.test", "weight": 1},
                                                     {"url": "http://10.0.0.9:80", "weight": 1}]}}}
    assert names_in(services) == {"api.test", "_web._tcp.test"} and not is_name("::1")
    r.results = {"api.test": [("10.0.0.1", 0, 0), ("fd00::1", 0, 0)], "_web._tcp.test": [("10.0.0.2", 9000, 5)]}
    r.expand(services)
    assert services["s"]["load_balancer"]["servers"] == [
        {"url": "http://10.0.0.1:8080", "weight": 2}, {"url": "http://[fd00::1]:8080", "weight": 2},
        {"url": "http://10.0.0.2:9000", "weight": 5}, {"url": "http://10.0.0.9:80", "weight": 1}]


def test_status_ranges():
    assert parse_status_range("200-399") == (200, 399) and parse_status_range("204") == (204, 204)


# -- the store providers' key layout and contract (master/providers/kv.py, provider.py)

def test_kv_decode_follows_the_file_format_and_traefik_spellings():
    from a3s_gateway.master.providers.kv import decode
    part = decode({
        "a3s/http/routers/w/rule": "Host(`w`)", "a3s/http/routers/w/service": "app",
        "a3s/http/routers/w/priority": "7", "a3s/http/routers/w/middlewares/0": "rl",
        "a3s/http/routers/w/middlewares/1": "auth@file", "a3s/http/routers/w/entrypoints": "web, websecure",
        "a3s/http/services/app/loadBalancer/servers/1/url": "http://b", "a3s/http/services/app/loadbalancer/"
        "servers/0/url": "http://a", "a3s/http/services/app/loadbalancer/passhostheader": "false",
        "a3s/http/middlewares/rl/rateLimit/rate": "5", "other/key": "ignored",
    }, "a3s", "etcd")
    assert part.objects[("routers", "w@etcd")] == {
        "rule": "Host(`w`)", "service": "app@etcd", "priority": 7, "middlewares": ["rl@etcd", "auth@file"],
        "entrypoints": ["web", "websecure"]}
    assert part.objects[("services", "app@etcd")] == {"load_balancer": {
        "servers": [{"url": "http://a"}, {"url": "http://b"}], "pass_host_header": False}}
    assert part.objects[("middlewares", "rl@etcd")] == {"type": "rate-limit", "rate": 5.0}
    assert part.origins[("routers", "w@etcd")] == "a3s/http/routers/w"
    assert not part.problems and not part.unplaced


def test_kv_decode_reports_clashing_and_misplaced_keys_by_key_path():
    from a3s_gateway.master.providers.kv import decode
    part = decode({"a3s/http/routers/w/rule": "x", "a3s/http/routers/w/rule/sub": "y", "a3s/http/bogus/n/k": "v",
                   "a3s/http/routers/a@b/rule": "x"}, "a3s", "redis")
    assert "a3s/http/routers/w/rule/sub" in part.problems[("routers", "w@redis")]
    assert "'@'" in part.problems[("routers", "a@b@redis")]
    assert part.unplaced and "a3s/http/bogus/n/k" in part.unplaced[0]
    assert not part.objects


def test_kv_encode_is_read_back_by_decode_into_the_same_objects():
    from a3s_gateway.master.providers.kv import decode, encode
    config = {"entrypoints": {"db": {"protocol": "tcp"}},
              "routers": {"r": {"rule": "HostSNI(`*`)", "service": "s", "entrypoints": ["db"], "priority": 3}},
              "services": {"s": {"load_balancer": {"servers": [{"url": "tcp://127.0.0.1:5432", "weight": 2}]}}},
              "middlewares": {"h": {"type": "headers", "response_headers": {"X-A": "1"}}}}
    keys = encode(config, "a3s")
    assert "a3s/tcp/routers/r/rule" in keys and "a3s/tcp/services/s/load_balancer/servers/0/url" in keys
    objects = decode(keys, "a3s", "etcd").objects
    assert objects[("routers", "r@etcd")] == {**config["routers"]["r"], "service": "s@etcd"}
    assert objects[("services", "s@etcd")] == config["services"]["s"]
    assert objects[("middlewares", "h@etcd")] == config["middlewares"]["h"]


def test_merge_leaves_out_invalid_objects_and_what_depends_on_them_and_files_win():
    from a3s_gateway.master.providers.provider import merge
    from a3s_gateway.shared.config import GatewayConfig
    static = GatewayConfig.from_dict({"routers": {"f": {"rule": "Path(`/f`)", "service": "whoami@internal"}}}).data
    lb = {"load_balancer": {"servers": [{"url": "http://127.0.0.1:1"}]}}
    objects = {("services", "bad@etcd"): {"load_balancer": {"servers": [{"url": "nope"}]}},
               ("routers", "uses-bad@etcd"): {"rule": "Path(`/b`)", "service": "bad@etcd"},
               ("services", "ok@etcd"): lb, ("routers", "ok@etcd"): {"rule": "Path(`/o`)", "service": "ok@etcd"},
               ("routers", "f"): {"rule": "Path(`/x`)", "service": "ok@etcd"}}
    data, rejected = merge(static, {"etcd": objects}, "<etcd>")
    assert set(data["routers"]) == {"f", "ok@etcd"} and data["routers"]["f"]["rule"] == "Path(`/f`)"
    assert set(rejected["etcd"]) == {("services", "bad@etcd"), ("routers", "uses-bad@etcd"), ("routers", "f")}
    assert "unknown service 'bad@etcd'" in rejected["etcd"][("routers", "uses-bad@etcd")]
    assert "files win" in rejected["etcd"][("routers", "f")]


def test_a_burst_of_1000_changes_settles_into_one_read():
    import asyncio

    from a3s_gateway.master.providers.kv import Partial
    from a3s_gateway.master.providers.provider import Provider

    class Burst(Provider):
        name = "burst"
        reads = 0

        async def connect(self) -> None: ...
        async def close(self) -> None: ...

        async def read(self) -> Partial:
            self.reads += 1
            return Partial()

        async def watch(self) -> None:
            for _ in range(1000):
                self.changed()
                await asyncio.sleep(0)
            await asyncio.Event().wait()

    offers = []

    async def offer(p: Provider, part: Partial) -> None:
        offers.append(part)

    async def run() -> Burst:
        p = Burst({"debounce": 0.05, "max_backoff": 1.0}, offer)
        p.start()
        for _ in range(100):
            if p.reads >= 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)           # no further read comes
        await p.stop()
        return p

    p = asyncio.run(run())
    assert p.reads == 2 and p.connected and len(offers) == 2    # the first read, then one for the burst


def _container(name: str, labels: dict[str, str], running: bool = True, health: str | None = None,
               exposed: tuple[str, ...] = (), networks: dict[str, str] | None = None) -> dict:
    """An Engine API inspect answer, the parts the Docker provider reads."""
    state = {"Running": running, "Paused": False, **({"Health": {"Status": health}} if health else {})}
    return {"Name": f"/{name}", "State": state,
            "Config": {"Labels": labels, "ExposedPorts": {p: {} for p in exposed}},
            "HostConfig": {"NetworkMode": "bridge" if networks else "host"},
            "NetworkSettings": {"Networks": {n: {"IPAddress": ip} for n, ip in (networks or {}).items()}}}


def _docker(**settings: object):
    from a3s_gateway.master.providers.docker import DockerProvider
    from a3s_gateway.shared.config import GatewayConfig
    full = GatewayConfig.from_dict({"providers": {"docker": settings}}).data["providers"]["docker"]
    return DockerProvider(full, None)  # type: ignore[arg-type]


def test_docker_defaults_network_choice_tcp_routers_and_constraints():
    p = _docker(constraints=["zone=public"], default_rule="Host(`{name}.local`)")
    plain, serving = p.container(_container("My_App", {"zone": "public"}, exposed=("9000/tcp", "80/tcp"),
                                            networks={"back": "10.0.0.2", "front": "10.0.1.2"}))
    assert serving and plain.objects == {
        ("routers", "My-App@docker"): {"rule": "Host(`My-App.local`)", "service": "My-App@docker"},
        ("services", "My-App@docker"): {"load_balancer": {"servers": [{"url": "http://10.0.0.2:80"}]}}}
    tcp, _ = p.container(_container("db", {"zone": "public", "a3s.docker.network": "front",
                                           "traefik.tcp.routers.pg.rule": "HostSNI(`*`)",
                                           "traefik.tcp.routers.pg.entrypoints": "pg",
                                           "a3s.tcp.services.pg.loadbalancer.server.port": "5432"},
                                     networks={"back": "10.0.0.3", "front": "10.0.1.3"}))
    assert tcp.objects[("routers", "pg@docker")] == {"rule": "HostSNI(`*`)", "entrypoints": ["pg"],
                                                    "service": "pg@docker"}
    assert tcp.objects[("services", "pg@docker")]["load_balancer"]["servers"] == [{"url": "tcp://10.0.1.3:5432"}]
    assert p.container(_container("other", {"zone": "private"}))[0].objects == {}
    assert _docker(exposed_by_default=False).container(_container("x", {}, exposed=("80/tcp",)))[0].objects == {}


def test_docker_replicas_merge_and_a_service_with_no_serving_container_keeps_weight_0():
    p = _docker()
    lab = {"a3s.http.routers.web.rule": "Host(`w`)", "a3s.http.services.web.loadbalancer.server.port": "80"}
    up = p.container(_container("a", lab, networks={"n": "10.0.0.1"}))
    starting = p.container(_container("b", lab, health="starting", networks={"n": "10.0.0.2"}))
    stopped = p.container(_container("c", {**lab, "a3s.http.routers.web.rule": "Host(`other`)"}, running=False,
                                     networks={"n": "10.0.0.3"}))
    both = p.combine([up, starting, stopped])
    assert both.objects[("services", "web@docker")]["load_balancer"]["servers"] == [{"url": "http://10.0.0.1:80"}]
    assert both.objects[("routers", "web@docker")]["rule"] == "Host(`w`)"
    assert "container 'c'" in both.unplaced[0] and "container 'a'" in both.unplaced[0]
    down = p.combine([starting])
    assert down.objects[("services", "web@docker")]["load_balancer"] == {
        "servers": [{"url": "http://10.0.0.2:80", "weight": 0}], "strategy": "weighted"}
    missing_port, _ = p.container(_container("noport", {}))
    assert "no port" in missing_port.problems[("services", "noport@docker")]
