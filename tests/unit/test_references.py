"""Service and middleware references checked at load: Traefik's ``name@provider`` suffixes (accepted for the
provider that defines the name, refused with the right one suggested otherwise) and a privacy-router's
``tee_service``, which must name a service like a router's ``service`` does."""

from __future__ import annotations

from pathlib import Path

import pytest
from a3s_gateway.master import cli
from a3s_gateway.shared.config import ConfigError, GatewayConfig

BASE = """
[routers.r]
rule = "PathPrefix(`/`)"
service = "SERVICE"
middlewares = MIDDLEWARES
[services.app.load_balancer]
servers = [{url = "http://127.0.0.1:8001"}]
[middlewares.auth]
type = "api-key"
keys = ["k"]
"""

PRIVACY = """
[middlewares.privacy]
type = "privacy-router"
tee_service = "TEE"
"""


def _config(service: str = "app", middlewares: str = "[]", tee: str | None = None) -> str:
    text = BASE.replace("SERVICE", service).replace("MIDDLEWARES", middlewares)
    return text + PRIVACY.replace("TEE", tee) if tee is not None else text


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        GatewayConfig.from_toml(text, source="gw.toml")
    return [str(p) for p in e.value.problems]


def test_file_and_internal_suffixes_resolve_to_the_names_workers_know() -> None:
    cfg = GatewayConfig.from_toml(_config("app@file", '["auth@file", "auth"]', tee="whoami@internal"))
    assert cfg.routers["r"]["service"] == "app" and cfg.routers["r"]["middlewares"] == ["auth", "auth"]
    assert cfg.middlewares["privacy"]["tee_service"] == "whoami@internal"
    assert GatewayConfig.from_dict(cfg.data) == cfg          # normalized data is accepted again unchanged


@pytest.mark.parametrize("service,middlewares,expected", [
    ("whoami@file", "[]", "gw.toml: routers.r.service: service 'whoami' is defined by the internal provider, "
                          "not by 'file' (did you mean 'whoami@internal'?)"),
    ("app@internal", "[]", "gw.toml: routers.r.service: service 'app' is defined by the file provider, not by "
                           "'internal' (did you mean 'app@file'?)"),
    ("app@fiel", "[]", "gw.toml: routers.r.service: unknown provider 'fiel' in 'app@fiel' (providers: file, "
                       "internal, discovery, redis, etcd, consul, docker, kubernetes, gateway, crd) (did you mean "
                       "'app@file'?)"),
    ("app", '["auth@nomad"]', "gw.toml: routers.r.middlewares[0]: unknown provider 'nomad' in 'auth@nomad' "
                              "(providers: file, internal, discovery, redis, etcd, consul, docker, kubernetes, "
                              "gateway, crd) (did you mean 'auth@file'?)"),
    ("app", '["auth@kubernetes"]', "gw.toml: routers.r.middlewares[0]: middleware 'auth' is defined by the file "
                                   "provider, not by 'kubernetes' (did you mean 'auth@file'?)"),
    ("app", '["auth@internal"]', "gw.toml: routers.r.middlewares[0]: middleware 'auth' is defined by the file "
                                 "provider, not by 'internal' (did you mean 'auth@file'?)"),
    ("ap@file", "[]", "gw.toml: routers.r.service: unknown service 'ap@file': the file provider defines no "
                      "service 'ap' (did you mean 'app'?)"),
])
def test_a_reference_to_the_wrong_provider_is_refused_naming_the_right_one(
        service: str, middlewares: str, expected: str) -> None:
    assert _problems(_config(service, middlewares)) == [expected]


def test_discovery_services_cannot_be_named_from_the_files() -> None:
    (problem,) = _problems(_config("api@discovery"))
    assert "routers.r.service: 'api@discovery': the discovery provider's services cannot be named here" in problem


def test_unknown_tee_service_is_refused_at_load() -> None:
    assert _problems(_config(tee="tee-backend")) == ["gw.toml: middlewares.privacy.tee_service: unknown service "
                                                     "'tee-backend'"]
    assert _problems(_config(tee="ap")) == ["gw.toml: middlewares.privacy.tee_service: unknown service 'ap' "
                                            "(did you mean 'app'?)"]


def test_validate_names_the_conf_d_file_of_a_bad_tee_service(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "privacy.toml").write_text(PRIVACY.replace("TEE", "nope"))
    main = tmp_path / "gateway.toml"
    main.write_text('[providers.file]\nwatch = false\ndirectory = "conf.d"\n' + _config())
    assert cli.main(["validate", "--config", str(main)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'conf.d' / 'privacy.toml'}: middlewares.privacy.tee_service: unknown service 'nope'" in err
    assert "1 problem(s) found" in err
