"""The store providers through the real binary (2 workers) against real redis-server and etcd processes.

Each behaviour every store shares runs once per store (``store`` is parametrized); what only one store does
(Redis without keyspace notifications, etcd compaction, Consul's one list per change) has its own test. Consul
is not packaged for Debian: its tests run against consul_fake.py, a fake of its KV and blocking-query API.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from certs import CA
from harness import BINARY, Backend, Gateway, free_port, wait_until
from stores import ConsulFake, Daemon, Etcd, RedisServer

BASE = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[middlewares.tag]
type = "headers"
response_headers = {X-From = "file"}
"""


STORES = {"redis": RedisServer, "etcd": Etcd, "consul": ConsulFake}


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Daemon]:
    daemon: Daemon = STORES[request.param](tmp_path / request.param)
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture
def app() -> Iterator[Backend]:
    b = Backend("app")
    yield b
    b.stop()


@pytest.fixture
def gw(store: Daemon, tmp_path: Path) -> Iterator[Gateway]:
    g = Gateway(BASE + store.provider_toml(), tmp_path)
    yield g
    g.stop()


@contextmanager
def gateway_on(daemon: Daemon, tmp: Path) -> Iterator[Gateway]:
    """``daemon`` started, and a gateway reading from it; both stopped after."""
    daemon.start()
    try:
        g = Gateway(BASE + daemon.provider_toml(), tmp)
        try:
            yield g
        finally:
            g.stop()
    finally:
        daemon.stop()


def service_keys(name: str, url: str) -> dict[str, str]:
    return {f"a3s/http/services/{name}/loadBalancer/servers/0/url": url}


def router_keys(name: str, host: str, service: str, **extra: str) -> dict[str, str]:
    keys = {f"a3s/http/routers/{name}/rule": f"Host(`{host}`)", f"a3s/http/routers/{name}/service": service}
    keys.update({f"a3s/http/routers/{name}/{k}": v for k, v in extra.items()})
    return keys


def status(g: Gateway, host: str) -> int:
    return httpx.get(g.url + "/", headers={"Host": host}, timeout=5).status_code


def provider(g: Gateway, name: str) -> dict:
    return next(p for p in httpx.get(g.admin + "/api/providers").json() if p["name"] == name)


def kind(store: Daemon) -> str:
    return next(name for name, cls in STORES.items() if isinstance(store, cls))


def test_store_keys_become_routes_with_file_middlewares_and_a_delete_removes_them(store, gw, app):
    store.put(service_keys("app", app.url))
    store.put(router_keys("w", "w.test", "app", **{"middlewares/0": "tag@file"}))
    wait_until(lambda: status(gw, "w.test") == 200, 5, what="route from the store")
    r = httpx.get(gw.url + "/", headers={"Host": "w.test"})
    assert r.json()["name"] == "app" and r.headers["x-from"] == "file"
    name = kind(store)
    routers = {x["name"]: x for x in httpx.get(gw.admin + "/api/routers").json()}
    assert routers[f"w@{name}"]["provider"] == name and routers[f"w@{name}"]["service"] == f"app@{name}"
    p = provider(gw, name)
    assert p["connected"] and p["objects"] == 2 and p["last_error"] is None and p["last_sync"]
    store.delete("a3s/http/routers/w/")
    wait_until(lambda: status(gw, "w.test") == 404, 5, what="route removed")


def test_malformed_update_keeps_that_objects_last_good_version_and_the_rest_applies(store, gw, app):
    name = kind(store)
    store.put(service_keys("app", app.url) | router_keys("w", "w.test", "app"))
    wait_until(lambda: status(gw, "w.test") == 200, 5, what="route from the store")
    # one bad object (a priority that is no number, an unknown key) beside a good new one
    store.put(router_keys("w", "w.test", "app", priority="high", colour="blue") | router_keys("v", "v.test", "app"))
    wait_until(lambda: status(gw, "v.test") == 200, 5, what="the good object of the same update")
    assert status(gw, "w.test") == 200          # the old w still routes
    p = wait_until(lambda: (p := provider(gw, name))["problems"] and p, 5, what="problem reported")
    text = " ".join(p["problems"])
    assert "a3s/http/routers/w" in text and "priority" in text and "colour" in text and "last good" in text
    metrics = httpx.get(gw.admin + "/api/gateway/metrics").text
    assert re.search(rf'a3s_gateway_provider_rejected_updates_total{{provider="{name}"}} [1-9]', metrics)
    # an unknown middleware type is reported the same way; a bad router naming a missing service too
    store.put({"a3s/http/middlewares/m/type": "no-such-type"} | router_keys("u", "u.test", "missing"))
    wait_until(lambda: "no-such-type" in " ".join(provider(gw, name)["problems"]), 5, what="middleware reported")
    assert "a3s/http/routers/u" in " ".join(provider(gw, name)["problems"])
    assert status(gw, "u.test") == 404 and status(gw, "v.test") == 200


def test_outage_keeps_the_last_good_config_and_the_provider_reconnects(store, gw, app):
    name = kind(store)
    store.put(service_keys("app", app.url) | router_keys("w", "w.test", "app"))
    wait_until(lambda: status(gw, "w.test") == 200, 5, what="route from the store")
    store.stop()
    wait_until(lambda: not provider(gw, name)["connected"], 10, what="provider disconnected")
    assert provider(gw, name)["last_error"]
    assert status(gw, "w.test") == 200
    store.start()
    wait_until(lambda: provider(gw, name)["connected"], 10, what="provider reconnected")
    store.put(router_keys("v", "v.test", "app"))
    wait_until(lambda: status(gw, "v.test") == 200, 5, what="updates after the reconnect")
    assert status(gw, "w.test") == 200


def test_redis_without_keyspace_notifications_warns_and_polls(tmp_path, app):
    redis = RedisServer(tmp_path / "redis", config_allowed=False)   # as on ElastiCache: CONFIG is refused
    with gateway_on(redis, tmp_path) as g:
        wait_until(lambda: provider(g, "redis")["connected"], 5, what="connected")
        assert "polling every 0.3s" in provider(g, "redis")["warning"]
        redis.put(service_keys("app", app.url) | router_keys("w", "w.test", "app"))
        wait_until(lambda: status(g, "w.test") == 200, 5, what="route found by polling")
        redis.delete("a3s/http/routers/w/")
        wait_until(lambda: status(g, "w.test") == 404, 5, what="removal found by polling")


def test_redis_with_notifications_has_no_warning_and_turns_them_on(tmp_path):
    redis = RedisServer(tmp_path / "redis")
    with gateway_on(redis, tmp_path) as g:
        wait_until(lambda: provider(g, "redis")["connected"], 5, what="connected")
        assert provider(g, "redis")["warning"] is None
        flags = redis.cli("CONFIG", "GET", "notify-keyspace-events").split()[-1]
        assert "K" in flags and "$" in flags and "g" in flags


def test_etcd_compaction_mid_watch_loses_nothing(tmp_path, app):
    etcd = Etcd(tmp_path / "etcd")
    with gateway_on(etcd, tmp_path) as g:
        etcd.put(service_keys("app", app.url) | router_keys("a", "a.test", "app"))
        wait_until(lambda: status(g, "a.test") == 200, 5, what="first route")
        for i in range(20):
            etcd.put({"a3s/http/routers/a/priority": str(i)})
        etcd.ctl("compact", str(etcd.revision()))
        etcd.put(router_keys("b", "b.test", "app"))
        etcd.delete("a3s/http/routers/a/")
        wait_until(lambda: status(g, "b.test") == 200 and status(g, "a.test") == 404, 5, what="after compaction")
        assert provider(g, "etcd")["connected"]


def seed_config(tmp: Path) -> tuple[str, str]:
    """The seed README's example config (tests/unit/test_config.py), runnable here: its objects as written, its
    entrypoints on free loopback ports with real certificates; returned as (whole file, file without objects)."""
    text = (Path(__file__).parent.parent / "unit" / "test_config.py").read_text()
    seed = text.split('SEED_TOML = r"""', 1)[1].split('"""', 1)[0]
    seed = seed.split("[providers.file]", 1)[0]          # its seeds are 10.0.0.x addresses, not ours
    pair = CA(tmp).issue("api.example.com")
    seed = seed.replace("/etc/certs/cert.pem", str(pair.cert)).replace("/etc/certs/key.pem", str(pair.key))
    for i, port in enumerate((80, 443, 5432)):
        seed = seed.replace(f'"0.0.0.0:{port}"', f'"127.0.0.1:{free_port()}"' if i else '"127.0.0.1:{web}"')
    head = seed.split("[routers.api]", 1)[0]
    return seed + '[admin]\naddress = "127.0.0.1:{admin}"\n', head + '[admin]\naddress = "127.0.0.1:{admin}"\n'


def live_objects(g: Gateway, suffix: str = "") -> dict:
    """The live generation's routers, services and middlewares as the admin API shows them, ``suffix`` and the
    provider column taken off, so a file's objects and a store's compare equal."""
    def strip(value):
        if isinstance(value, dict):
            return {strip(k): strip(v) for k, v in value.items() if k != "provider"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value.removesuffix(suffix) if suffix and isinstance(value, str) else value

    return {kind: {item["name"]: item for item in strip(httpx.get(f"{g.admin}/api/{kind}").json())}
            for kind in ("routers", "services", "middlewares")}


def test_kv_export_round_trips_the_seed_readme_config_through_the_store(store, tmp_path):
    name = kind(store)
    whole, without_objects = seed_config(tmp_path)
    env = {"JWT_SECRET": "s3cr3t-jwt-value"}
    (tmp_path / "file").mkdir()
    from_file = Gateway(whole, tmp_path / "file", env=env)
    try:
        expected = live_objects(from_file)
        exported = subprocess.run([*BINARY, "kv", "export", "--format", name, "--config", str(from_file.config_path)],
                                  check=True, capture_output=True, text=True, env={**os.environ, **env}).stdout
    finally:
        from_file.stop()
    assert expected["routers"] and "a3s/http/middlewares/auth-jwt/value" in exported
    if name == "redis":
        subprocess.run(["redis-cli", "-p", str(store.port)], input=exported, check=True, capture_output=True,
                       text=True)
    elif name == "consul":          # the `consul kv import` document
        store.put({e["key"]: base64.b64decode(e["value"]).decode() for e in json.loads(exported)})
    else:
        subprocess.run(["sh", "-e"], input=exported, check=True, capture_output=True, text=True,
                       env={**os.environ, "ETCDCTL_API": "3", "ETCDCTL_ENDPOINTS": f"127.0.0.1:{store.port}"})
    (tmp_path / "store").mkdir()
    g = Gateway(without_objects + store.provider_toml(), tmp_path / "store", env=env)
    try:
        wait_until(lambda: len(live_objects(g)["middlewares"]) == len(expected["middlewares"]), 5, what="objects")
        assert live_objects(g, f"@{name}") == expected
        assert provider(g, name)["problems"] == []
    finally:
        g.stop()


def test_consul_reads_one_list_per_change_not_one_per_key(tmp_path, app):
    consul = ConsulFake(tmp_path / "consul")
    with gateway_on(consul, tmp_path) as g:
        wait_until(lambda: provider(g, "consul")["connected"], 5, what="connected")
        before = consul.reads()
        keys = service_keys("app", app.url)
        for i in range(50):
            keys |= router_keys(f"r{i}", f"r{i}.test", "app")
        consul.put(keys)                       # 101 keys, one write each
        wait_until(lambda: status(g, "r49.test") == 200, 10, what="all routers")
        after = consul.reads()
        assert after["keys"] == 0 and after["lists"] - before["lists"] < 10   # a few settled lists, no per-key reads


def test_etcd_watch_from_a_compacted_revision_relists_instead_of_stopping(tmp_path):
    """traefik/traefik#566: the watch's revision was compacted away (as after a long disconnect)."""
    import asyncio

    from a3s_gateway.master.providers.etcd import EtcdProvider
    from a3s_gateway.shared.config import GatewayConfig

    etcd = Etcd(tmp_path / "etcd")
    etcd.start()
    try:
        etcd.put({"a3s/http/routers/a/rule": "Path(`/`)"})
        stale = etcd.revision()
        for i in range(5):
            etcd.put({"a3s/http/routers/a/priority": str(i)})
        etcd.ctl("compact", str(etcd.revision()))
        settings = GatewayConfig.from_dict({"providers": {"etcd": {"endpoint": f"127.0.0.1:{etcd.port}"}}}).data

        async def watch_from_stale() -> bool:
            provider = EtcdProvider(settings["providers"]["etcd"], None)  # type: ignore[arg-type]
            await provider.connect()
            provider.revision = stale              # read before the compaction
            task = asyncio.get_running_loop().create_task(provider.watch())
            try:
                await asyncio.wait_for(provider._dirty.wait(), 5)
                return not task.done()             # asked for a relist and still watching
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await provider.close()

        assert asyncio.run(watch_from_stale())
    finally:
        etcd.stop()
