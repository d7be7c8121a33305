"""References with a provider suffix through the real binary: a router's ``service = "svc@file"`` (defined in the
conf.d directory) and ``middlewares = ["auth@file"]`` route and authenticate as the plain names would, and a
reload whose privacy-router names a ``tee_service`` that does not exist is refused while the old config serves."""

from __future__ import annotations

from pathlib import Path

import httpx
from harness import Gateway

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[providers.file]
watch = false
directory = "conf.d"
[routers.api]
rule = "PathPrefix(`/api`)"
service = "svc@file"
middlewares = ["auth@file"]
[routers.who]
rule = "PathPrefix(`/who`)"
service = "whoami@internal"
[middlewares.auth]
type = "api-key"
keys = ["k1"]
"""

BAD_TEE = """
[routers.private]
rule = "PathPrefix(`/private`)"
service = "svc"
middlewares = ["privacy"]
[middlewares.privacy]
type = "privacy-router"
tee_service = "tee-backend"
"""


def test_provider_suffixed_references_route_and_a_bad_tee_service_reload_is_refused(tmp_path: Path,
                                                                                     backends) -> None:
    b = backends("app")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "services.toml").write_text(f'[services.svc.load_balancer]\nservers = [{{url = "{b.url}"}}]')
    g = Gateway(CONFIG, tmp_path)
    try:
        with httpx.Client(base_url=g.url, timeout=5) as c:
            assert c.get("/api/x").status_code == 401
            ok = c.get("/api/x", headers={"X-API-Key": "k1"})
            assert ok.status_code == 200 and ok.json()["name"] == "app"
            assert c.get("/who").status_code == 200
            generation = g.health()["generation"]
            assert g.reload(CONFIG + BAD_TEE) == generation
            last = g.health()["last_reload"]
            assert last["ok"] is False
            assert last["errors"] == [f"{g.config_path}: middlewares.privacy.tee_service: unknown service "
                                      "'tee-backend'"]
            assert c.get("/api/x", headers={"X-API-Key": "k1"}).json()["name"] == "app"   # the old config serves
            assert c.get("/private").status_code == 404
    finally:
        assert g.stop() == 0
