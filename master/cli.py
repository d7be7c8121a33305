"""The ``a3s-gateway`` command line: a thin user of ``Gateway`` (one lifecycle for binary and library).

    a3s-gateway [--config FILE] [--listen ADDR] [--admin ADDR|off] [--kubeconfig FILE] [--workers N]
                [--log-level LEVEL] [--log-format json|text] [--graceful-timeout S] [--user USER] [--group GROUP]
                [--version]
    a3s-gateway validate [--config FILE] [MANIFEST.yaml ...]
    a3s-gateway status [--pid PID] [--json]
    a3s-gateway kv export --format etcd|redis|consul --config FILE

Without ``--config``, ``./gateway.toml`` is used when present, otherwise the embedded default config
(``web`` on 127.0.0.1:8080 → the built-in ``whoami@internal`` echo service; admin API on 127.0.0.1:9090).
The start-up log names every address really listened on once all workers accept.
Exit codes: 0 clean stop, 1 invalid config or failed start, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version

import uvloop

from .. import extensions
from ..shared import log as gwlog
from ..shared.config import GatewayConfig
from ..shared.errors import ConfigError, GatewayError
from . import status
from .gateway import Gateway
from .serving.revisions import problems as serving_problems


def _version() -> str:
    try:
        return version("a3s-gateway")
    except PackageNotFoundError:
        return "0+unknown"


def _load(path: str | None) -> GatewayConfig:
    if path:
        return GatewayConfig.from_file(path)
    if os.path.exists("gateway.toml"):
        return GatewayConfig.from_file("gateway.toml")
    return GatewayConfig.default()


def validate(argv: list[str]) -> int:
    """Check a config file and/or YAML files of our CRD objects (``Route``, ``Middleware``), every problem listed.

    The objects are checked as the Kubernetes provider would, joined to the config file (or to an empty config
    without one), so a Route may use the file's middlewares and services."""
    from .providers.kubernetes.check import check_files

    ap = argparse.ArgumentParser(prog="a3s-gateway validate",
                                 description="Check a config file and/or Kubernetes manifests of our CRDs, and exit.")
    ap.add_argument("--config")
    ap.add_argument("manifests", nargs="*", metavar="MANIFEST.yaml",
                    help="YAML files with a3s.io/v1alpha1 Route and Middleware objects (other kinds are skipped)")
    args = ap.parse_args(argv)
    if not args.config and not args.manifests:
        ap.error("give --config FILE, manifest files, or both")
    problems: list[str] = []
    cfg = GatewayConfig.from_dict({}, source="<empty>")
    if args.config:
        try:
            cfg = GatewayConfig.from_file(args.config)
            problems += [str(p) for p in serving_problems(cfg.data, cfg.source)]   # checked by executor classes
        except ConfigError as e:
            problems += [str(p) for p in e.problems]
    report = check_files(args.manifests, cfg.to_dict()) if args.manifests else None
    if report is not None:
        problems += report.problems
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    if args.config:
        print(cfg.summary())
    if report is not None:
        print(f"{report.checked} Route/Middleware object(s) valid in {len(args.manifests)} file(s)"
              + (f", {report.skipped} document(s) of other kinds skipped" if report.skipped else ""))
    return 0


SUBCOMMANDS = """subcommands:
  a3s-gateway validate [--config FILE] [MANIFEST.yaml ...]
                                          check a config file and/or our CRD objects' YAML and exit (every
                                          problem, with its key path)
  a3s-gateway status [--pid PID] [--json] print a running gateway's workers, backends and tables
  a3s-gateway kv export --format etcd|redis|consul --config FILE
                                          print a config's objects as keys for a KV store provider
(run one with --help for its options)"""


def kv_export(argv: list[str]) -> int:
    """Print a file config's routers, services and middlewares as store keys (master/providers/kv.py's layout):
    ``etcdctl put`` lines for a shell, ``SET`` lines for ``redis-cli``, or the JSON of ``consul kv import``.
    Values are the file's as written (``${VAR}`` substituted), so a provider reads back the same objects."""
    import base64
    import json
    import shlex

    from ..shared.config.load import load_file
    from ..shared.config.schema import Reporter
    from .providers.kv import encode

    ap = argparse.ArgumentParser(prog="a3s-gateway kv export", description="Print a config's objects as KV keys.")
    ap.add_argument("--format", required=True, choices=["etcd", "redis", "consul"])
    ap.add_argument("--config", required=True)
    ap.add_argument("--root-key", default="a3s")
    args = ap.parse_args(argv)
    try:
        GatewayConfig.from_file(args.config)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 1
    raw = load_file(args.config, Reporter(args.config))
    keys = encode(raw, args.root_key)
    if args.format == "consul":
        print(json.dumps([{"key": k, "flags": 0, "value": base64.b64encode(v.encode()).decode()}
                          for k, v in keys.items()], indent=2))
        return 0
    for key, value in keys.items():
        if args.format == "etcd":
            print(f"etcdctl put -- {shlex.quote(key)} {shlex.quote(value)}")
        else:
            quoted = [v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in (key, value)]
            print(f'SET "{quoted[0]}" "{quoted[1]}"')
    return 0


def serve(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="a3s-gateway", description="Reverse proxy and ingress controller.",
                                 epilog=SUBCOMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="TOML, YAML or JSON config file (.toml, .yaml/.yml, .json; default: "
                    "./gateway.toml or the embedded default)")
    ap.add_argument("--listen", help="override the address of the 'web' entrypoint (survives reloads)")
    ap.add_argument("--admin", metavar="ADDR|off", help="override the admin API's address, or 'off' to disable it "
                    "(survives reloads)")
    ap.add_argument("--kubeconfig", help="the kubeconfig file of [providers.kubernetes] (overrides its 'kubeconfig' "
                    "key and $KUBECONFIG; default: in-cluster credentials, then ~/.kube/config)")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    ap.add_argument("--log-format", default="json", choices=["json", "text"])
    ap.add_argument("--graceful-timeout", type=float, default=30.0, help="seconds to let requests finish on stop")
    ap.add_argument("--user", help="drop privileges to this user after binding")
    ap.add_argument("--group", help="drop privileges to this group after binding")
    ap.add_argument("--version", action="version", version=f"a3s-gateway {_version()}, {extensions.build()}")
    args = ap.parse_args(argv)
    log = gwlog.setup(args.log_level, args.log_format, proc="master")
    if args.workers is not None and args.workers < 1:
        ap.error("--workers must be at least 1")
    try:
        cfg = _load(args.config)
        if args.config is None and not os.path.exists("gateway.toml"):
            # where it listens is logged once the workers accept (--listen/--admin may have moved it)
            log.info("no config file: using the embedded default config (every request → whoami@internal)")
        gateway = Gateway(cfg, workers=args.workers, log_level=args.log_level, log_format=args.log_format,
                          graceful_timeout=args.graceful_timeout, listen=args.listen, admin=args.admin,
                          user=args.user, group=args.group, kubeconfig=args.kubeconfig)
    except ConfigError as e:
        for p in e.problems:
            log.error(str(p))
        return 1

    async def run() -> None:
        await gateway.start()
        await gateway.wait_for_shutdown()

    try:
        uvloop.run(run())
    except GatewayError as e:
        log.error(f"start failed: {e}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["validate"]:
        return validate(argv[1:])
    if argv[:1] == ["status"]:
        return status.main(argv[1:])
    if argv[:2] == ["kv", "export"]:
        return kv_export(argv[2:])
    return serve(argv)
