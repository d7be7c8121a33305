"""The ``serving`` service kind: its checks (every problem with its key path) and how it compiles to a weighted
service of per-revision load balancers plus tag routes (master/serving/revisions.py)."""

from __future__ import annotations

import pytest
from a3s_gateway.master.serving.revisions import Idle, expand, problems
from a3s_gateway.shared.config import GatewayConfig
from a3s_gateway.shared.errors import ConfigError

BASE = """
[entrypoints.web]
address = "127.0.0.1:8080"
[routers.fn]
rule = "Host(`fn.example`)"
service = "fn"
[services.fn.serving]
traffic = [{revision = "v1", percent = 90, tag = "stable"}, {revision = "latest", percent = 10, tag = "next"}]
[services.fn.serving.revisions.v1]
executor = "process"
container_concurrency = 4
process = {command = "app --port {port}", ports = "9100-9109"}
[services.fn.serving.revisions.v2]
executor = "process"
process = {command = "app --port {port}", ports = "9110-9119"}
"""


def problems_of(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        GatewayConfig.from_toml(text)
    return {p.path: p.message for p in e.value.problems}


def test_a_valid_service_normalizes_with_knative_defaults() -> None:
    serving = GatewayConfig.from_toml(BASE).services["fn"]["serving"]
    assert serving["traffic"][1]["revision"] == "v2"                   # latest: the last revision defined
    assert (serving["target_utilization"], serving["stable_window"], serving["panic_window_percentage"],
            serving["panic_threshold_percentage"], serving["max_scale_up_rate"], serving["max_scale_down_rate"],
            serving["scale_to_zero_grace"], serving["queue_depth"]) == (0.7, 60.0, 10.0, 200.0, 1000.0, 2.0, 30.0,
                                                                         10000)
    assert serving["revisions"]["v1"]["process"]["ports"] == [9100, 9109]


def test_impossible_settings_are_rejected_with_their_paths() -> None:
    text = BASE.replace("percent = 10,", "percent = 20,").replace('revision = "latest"', 'revision = "v3"')
    text = text.replace("container_concurrency = 4", "container_concurrency = 4\nmin_scale = 5\nmax_scale = 3")
    text = text.replace('ports = "9110-9119"', 'ports = "9110-9111"').replace(
        '[services.fn.serving.revisions.v2]\nexecutor = "process"', '[services.fn.serving.revisions.v2]\n'
        'executor = "process"\nmax_scale = 3')
    found = problems_of(text)
    assert found == {
        "services.fn.serving.traffic[1].revision": "unknown revision 'v3' (defined: v1, v2, or 'latest')",
        "services.fn.serving.traffic": "percents must sum to 100, got 110",
        "services.fn.serving.revisions.v1.min_scale": "must not exceed max_scale (3), got 5",
        "services.fn.serving.revisions.v2.process.ports": "2 ports cannot hold max_scale = 3 instances",
    }


def test_one_kind_per_service_and_one_executor_table_per_revision() -> None:
    found = problems_of(BASE + '[services.fn.load_balancer]\nservers = [{url = "http://127.0.0.1:1"}]\n'
                        '[services.fn.serving.revisions.v2.docker]\nimage = "x"\n')
    assert found["services.fn"].startswith("a service has exactly one kind")
    assert "services.fn.serving.revisions.v2.docker" in found


def test_other_executor_kinds_take_a_free_form_table_checked_by_their_class() -> None:
    text = BASE.replace('executor = "process"\nprocess = {command = "app --port {port}", ports = "9110-9119"}',
                        'executor = "kubernetes"\nkubernetes = {deployment = "fn-v2", anything = [1, 2]}')
    cfg = GatewayConfig.from_toml(text)
    assert cfg.services["fn"]["serving"]["revisions"]["v2"]["kubernetes"]["anything"] == [1, 2]
    found = problems(cfg.data, "<toml>")
    assert [p.path for p in found] in ([], ["services.fn.serving.revisions.v2.executor"],
                                       ["services.fn.serving.revisions.v2.kubernetes"])


class V1Ready(Idle):
    def ready(self, service: str, revision: str) -> list[str]:
        return ["127.0.0.1:9100"] if revision == "v1" else []


def test_revisions_compile_to_a_weighted_split_and_tag_routes() -> None:
    data = GatewayConfig.from_toml(BASE).to_dict()
    expand(data, V1Ready())
    services, routers = data["services"], data["routers"]
    assert services["fn"]["weighted"]["services"] == [{"name": "fn.v1", "weight": 90}, {"name": "fn.v2", "weight": 10}]
    v1 = services["fn.v1"]["load_balancer"]
    assert v1["servers"] == [{"url": "http://127.0.0.1:9100", "weight": 1}]
    assert v1["activator"]["container_concurrency"] == 4
    assert services["fn.v2"]["load_balancer"]["servers"] == []
    assert services["fn.tag.next"]["weighted"]["services"] == [{"name": "fn.v2", "weight": 1}]
    assert routers["fn.next"]["service"] == "fn.tag.next"
    assert routers["fn.next"]["rule"] == ("(Header(`Knative-Serving-Tag`, `next`) && (Host(`fn.example`))) || "
                                          "Host(`next-fn.example`)")
    assert routers["fn.next"]["priority"] == routers["fn"]["priority"] + 1


def test_the_top_level_serving_table_defaults_to_no_cluster_and_names_its_bad_keys() -> None:
    assert GatewayConfig.from_toml(BASE).data["serving"] == {"redis_url": None, "key_prefix": "a3s:serving",
                                                             "lease": 6.0, "timeout_ms": 500}
    found = problems_of(BASE + '[serving]\nredis_url = "http://127.0.0.1:6379"\nlease = "1s"\nkey_prefix = ""\n')
    assert set(found) == {"serving.redis_url", "serving.lease", "serving.key_prefix"}
    assert "at least 2s" in found["serving.lease"]
