"""packaging/Dockerfile, parsed (no image is built here): it installs the deb that packaging/build makes, copies
only what exists, runs unprivileged, and listens where packaging/kubernetes/deployment.yaml expects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "packaging" / "Dockerfile"
INSTRUCTIONS = {"FROM", "RUN", "COPY", "ADD", "WORKDIR", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "ENV", "ARG",
                "LABEL", "HEALTHCHECK", "VOLUME", "STOPSIGNAL", "SHELL", "ONBUILD"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += line
        word, _, args = pending.strip().partition(" ")
        out.append((word.upper(), args.strip()))
        pending = ""
    assert not pending, "a continued line at the end"
    return out


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for word, args in instructions():
        if word == "FROM":
            out.append([])
        out[-1].append((word, args))
    return out


def test_every_instruction_is_known_and_json_forms_parse() -> None:
    for word, args in instructions():
        assert word in INSTRUCTIONS, word
        if word in ("ENTRYPOINT", "CMD"):
            assert isinstance(json.loads(args), list), f"{word} in exec form"


def test_the_image_installs_the_deb_built_by_packaging_build() -> None:
    build, final = stages()
    assert build[0][1].endswith(" AS build") and final[0][1].startswith("debian:")
    assert any(w == "RUN" and "packaging/build deb" in a for w, a in build)
    assert ("COPY", "--from=build /out/ /tmp/deb/") in final
    assert any(w == "RUN" and "apt-get install" in a and "/tmp/deb/a3s-gateway_*.deb" in a for w, a in final)
    for word, args in build:
        if word == "COPY":
            *sources, _dest = args.split()
            assert all((REPO / s).exists() for s in sources), args


def test_the_image_runs_unprivileged_on_the_deployments_ports() -> None:
    final = dict(stages()[1])
    assert final["USER"] == "a3s-gateway"                      # the user the deb's postinst creates
    assert "useradd --system" in (REPO / "packaging" / "deb" / "postinst").read_text()
    assert json.loads(final["ENTRYPOINT"]) == ["/usr/bin/a3s-gateway"]
    cmd = json.loads(final["CMD"])
    exposed = {int(p) for p in final["EXPOSE"].split()}
    assert "--admin" not in cmd           # the deb's config keeps it on loopback: off it, it needs a token
    assert exposed == {int(cmd[cmd.index("--listen") + 1].rpartition(":")[2])}
    docs = [d for d in yaml.safe_load_all((REPO / "packaging" / "kubernetes" / "deployment.yaml").read_text()) if d]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    ports = {p["containerPort"] for c in pod["containers"] for p in c["ports"]}
    assert exposed <= ports               # plus the admin API, with its token from a Secret
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["gateway.toml"]
    assert {int(p) for p in re.findall(r'address = "0\.0\.0\.0:(\d+)"', config)} == ports


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = (REPO / "packaging" / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", "packaging/out"} <= set(ignored)
