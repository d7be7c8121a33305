"""The command line's Kubernetes parts, through the real binary: ``a3s-gateway validate`` on YAML files of our CRD
objects (every problem listed with the file, document, object and key path inside it; a Route may use the config
file's names; the shipped manifests' other kinds are skipped), and ``--kubeconfig``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import BINARY, wait_until
from kube_apiserver import FakeApiServer
from kube_support import config as kube_config
from kube_support import ingress, ingress_class, path, rule, service, slice_for

MANIFESTS = Path(__file__).resolve().parents[2] / "packaging" / "kubernetes"

OBJECTS = """\
apiVersion: a3s.io/v1alpha1
kind: Middleware
metadata: {name: strip, namespace: shop}
spec: {type: strip-prefix, prefixes: [/api]}
---
apiVersion: a3s.io/v1alpha1
kind: Middleware
metadata: {name: limit, namespace: shop}
spec: {type: rate-limit, rate: -1}
---
apiVersion: a3s.io/v1alpha1
kind: Route
metadata: {name: shop, namespace: shop}
spec:
  routers:
    api: {rule: "Host(`shop.test`) && Pathh(`/x`)", service: app, middlewares: [strip, limit]}
    files: {rule: "Host(`files.test`)", service: app, middlewares: [auth]}
  services:
    app: {load_balancer: {servers: [{url: "http://10.0.0.1:80"}]}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
"""

CONFIG = """
[middlewares.auth]
type = "basic-auth"
users = ["u:$apr1$x$y"]
"""


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BINARY, "validate", *args], capture_output=True, text=True, timeout=60)


def test_validate_lists_every_problem_of_crd_objects_with_its_path(tmp_path: Path) -> None:
    objects = tmp_path / "shop.yaml"
    objects.write_text(OBJECTS)
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    r = validate("--config", str(config), str(objects))
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert f"{objects}: document 2 (Middleware shop/limit): spec.rate: must be greater than 0, got -1" in lines
    assert any(line.startswith(f"{objects}: document 3 (Route shop/shop): spec.routers.api.rule: invalid http rule")
               and "did you mean 'Path'?" in line for line in lines), lines
    assert any(line.startswith(f"{objects}: document 3 (Route shop/shop): spec.routers.api.middlewares[1]: unknown "
                               "middleware 'shop-limit@crd'") for line in lines), lines
    assert not any("routers.files" in line for line in lines)      # 'auth' is the config file's
    assert lines[-1] == "3 problem(s) found"
    assert "auth" in validate(str(objects)).stderr                 # without the config, 'auth' is unknown


def test_validate_accepts_good_objects_and_skips_other_kinds(tmp_path: Path) -> None:
    objects = tmp_path / "ok.yaml"
    objects.write_text(OBJECTS.replace("rate: -1", "rate: 5").replace("Pathh", "Path")
                       .replace("middlewares: [auth]", "middlewares: [strip]"))
    r = validate(str(objects), str(MANIFESTS / "crd.yaml"))
    assert r.returncode == 0, r.stderr
    assert "3 Route/Middleware object(s) valid in 2 file(s), 3 document(s) of other kinds skipped" in r.stdout


def test_validate_reports_unreadable_yaml_and_objects_without_a_name(tmp_path: Path) -> None:
    broken, nameless = tmp_path / "broken.yaml", tmp_path / "nameless.yaml"
    broken.write_text("kind: [unclosed\n")
    nameless.write_text("apiVersion: a3s.io/v1alpha1\nkind: Route\nmetadata: {}\nspec: {}\n")
    r = validate(str(broken), str(nameless))
    assert r.returncode == 1
    assert f"{nameless}: document 1: metadata.name: required" in r.stderr
    assert str(broken) in r.stderr and "2 problem(s) found" in r.stderr


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


def test_kubeconfig_flag_picks_the_cluster_over_kubeconfig_env_and_survives_a_reload(api, backends, gateway,
                                                                                    tmp_path):
    app = backends("app")
    api.apply(ingress_class(), service("app"), slice_for("app", [app.port]),
              ingress("web", [rule("web.test", path("/", "app"))]))
    text = kube_config(api, tmp_path)
    kubeconfig = next(line for line in text.splitlines() if line.startswith("kubeconfig = "))
    text = text.replace(kubeconfig, "")               # the config file names no cluster
    flag_file = tmp_path / "flag-kubeconfig"
    flag_file.write_text(api.kubeconfig())
    gw = gateway(text, extra_args=["--kubeconfig", str(flag_file)],
                 env={"KUBECONFIG": str(tmp_path / "no-such-kubeconfig")})

    def served() -> bool:
        r = httpx.get(gw.url, headers={"Host": "web.test"}, timeout=5)
        return r.status_code == 200 and r.json()["name"] == "app"

    wait_until(served, timeout=20, what="the Ingress served from the --kubeconfig cluster")
    gw.reload()
    assert served()
    assert all(w["synced"] for w in gw.health()["control"]["kubernetes"]["watches"])
