"""Build the deb and rpm, install the deb on this machine and run the packaged gateway; check the rpm.

Slow (a fresh virtual environment is built, ~2 minutes) and intrusive (dpkg -i / --purge as root), so marked
``packaging``: run alone with ``pytest -m packaging tests/packaging``. The tools come from
``packaging/install-build-deps``, which the fixture runs too (it is quick when everything is present).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from a3s_gateway.extensions import COMPILED

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
BIN = "/usr/bin/a3s-gateway"
PREFIX = Path("/opt/a3s-gateway")


def run(
    *cmd: str, check: bool = True, timeout: float = 600, **kw: object
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def dpkg(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """dpkg, waiting (up to 5 minutes) while another apt/dpkg run holds the lock."""
    deadline = time.monotonic() + 300
    while True:
        r = run("dpkg", *args, check=False)
        if r.returncode == 0 or "lock" not in r.stderr or time.monotonic() > deadline:
            break
        time.sleep(1)
    if check and r.returncode != 0:
        raise AssertionError(f"dpkg {' '.join(args)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def wait_for(
    condition: Callable[[], object], what: str, timeout: float = 30.0, proc: subprocess.Popen | None = None
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"waiting for {what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (sockets held open together, so the kernel cannot repeat one)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def get(url: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None


def package_installed() -> bool:
    r = run("dpkg-query", "-W", "-f=${db:Status-Status}", "a3s-gateway", check=False)
    return r.returncode == 0 and r.stdout.strip() not in ("", "not-installed", "config-files")


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("package tests install system packages: they need root on Linux")
    if shutil.which("dpkg") is None or shutil.which("apt-get") is None:
        pytest.skip("package tests need a Debian-based machine (dpkg, apt-get)")
    run(str(PACKAGING / "install-build-deps"))
    out = tmp_path_factory.mktemp("packages")
    # The committed gateway (HEAD) unless A3S_PACKAGING_REF says otherwise: in CI's fresh clone that is the
    # work tree anyway, and on a shared work tree it keeps other people's unfinished edits out of the package.
    env = {**os.environ, "A3S_PACKAGING_OUT": str(out)}
    env.setdefault("A3S_PACKAGING_REF", "HEAD")
    r = run(str(PACKAGING / "build"), "all", env=env, timeout=900)
    arch = run("dpkg", "--print-architecture").stdout.strip()
    rpm_arch = os.uname().machine
    built = {
        "deb": out / f"a3s-gateway_{VERSION}_{arch}.deb",
        "rpm": out / f"a3s-gateway-{VERSION}.{rpm_arch}.rpm",
    }
    for kind, path in built.items():
        assert path.is_file(), f"{kind} not built at {path}; build said:\n{r.stdout}\n{r.stderr}"
        assert str(path) in r.stdout
    return built


@pytest.fixture(scope="module")
def installed_deb(packages: dict[str, Path]) -> Iterator[Path]:
    dpkg("-i", str(packages["deb"]))
    try:
        yield packages["deb"]
    finally:
        if package_installed() or Path("/var/lib/dpkg/info/a3s-gateway.list").exists():
            dpkg("--purge", "a3s-gateway", check=False)


# ------------------------------------------------------------------------------------------------ deb


def test_deb_installs_venv_binary_config_unit_logrotate_and_license(installed_deb: Path) -> None:
    assert os.path.realpath(BIN) == str(PREFIX / "bin" / "a3s-gateway")
    assert (PREFIX / "pyvenv.cfg").is_file()
    for path in (
        "/etc/a3s-gateway/gateway.toml",
        "/lib/systemd/system/a3s-gateway.service",
        "/etc/logrotate.d/a3s-gateway",
        "/usr/share/doc/a3s-gateway/copyright",
    ):
        assert Path(path).is_file(), path
    assert Path("/etc/a3s-gateway/conf.d").is_dir()
    assert "MIT License" in Path("/usr/share/doc/a3s-gateway/copyright").read_text()
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "a3s-gateway").stdout
    assert "/etc/a3s-gateway/gateway.toml" in conffiles
    # Nothing in the venv may still point into the build's staging folder.
    staged = run("grep", "-rlI", "a3s-gateway-build.", str(PREFIX), check=False)
    assert staged.stdout == "", staged.stdout


def test_deb_creates_system_user_owning_state_and_enables_the_service(installed_deb: Path) -> None:
    user = pwd.getpwnam("a3s-gateway")
    assert user.pw_uid < 1000, "a system user"
    assert user.pw_shell.endswith("nologin")
    assert grp.getgrgid(user.pw_gid).gr_name == "a3s-gateway"
    for state in ("/var/lib/a3s-gateway", "/var/log/a3s-gateway"):
        st = os.stat(state)
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), state
    config = os.stat("/etc/a3s-gateway/gateway.toml")
    assert config.st_gid == user.pw_gid and config.st_mode & 0o007 == 0, "config readable by the group only"
    # Enabled (the wants/ link exists even with no systemd running), and nothing started it.
    assert Path("/etc/systemd/system/multi-user.target.wants/a3s-gateway.service").is_symlink()
    assert run("pgrep", "-f", "/opt/a3s-gateway/bin/", check=False).stdout == ""


def test_deb_binary_reports_the_package_version_and_runs_compiled(installed_deb: Path) -> None:
    r = run(BIN, "--version")
    n = len(COMPILED)
    assert r.stdout.strip() == f"a3s-gateway {VERSION}, compiled ({n} of {n} modules)"


def test_deb_default_config_validates_with_the_packaged_binary(installed_deb: Path) -> None:
    r = run(BIN, "validate", "--config", "/etc/a3s-gateway/gateway.toml")
    assert "OK" in r.stdout


def test_deb_installed_unit_passes_systemd_analyze_verify(installed_deb: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (packaging/install-build-deps installs it)")
    r = run("systemd-analyze", "verify", "--man=no", "/lib/systemd/system/a3s-gateway.service", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def _config(port: int, backend_port: int, prefix: str) -> str:
    return f"""
[entrypoints.web]
address = "127.0.0.1:{port}"

[admin]
enabled = false

[routers.site]
rule = "PathPrefix(`/{prefix}`)"
service = "backend"

[services.backend.load_balancer]
servers = [{{ url = "http://127.0.0.1:{backend_port}" }}]
"""


def test_deb_packaged_gateway_proxies_reloads_on_sighup_and_exits_0_on_sigterm(
    installed_deb: Path, tmp_path: Path
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "one").write_text("first\n")
    (www / "two").write_text("second\n")
    backend_port, port = free_ports(2)
    backend = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(www),
            str(backend_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = tmp_path / "gateway.toml"
    config.write_text(_config(port, backend_port, "one"))
    log = (tmp_path / "gateway.log").open("w")
    gateway = subprocess.Popen(
        [BIN, "--config", str(config), "--workers", "2"], stdout=log, stderr=log, cwd=tmp_path
    )
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{backend_port}/one"), "the backend")
        status = wait_for(lambda: get(f"http://127.0.0.1:{port}/one"), "the gateway to answer", 60, gateway)
        assert status == (200, b"first\n")
        assert get(f"http://127.0.0.1:{port}/two")[0] == 404  # type: ignore[index]

        config.write_text(_config(port, backend_port, "two"))
        gateway.send_signal(signal.SIGHUP)
        wait_for(
            lambda: get(f"http://127.0.0.1:{port}/two") == (200, b"second\n"), "the reload to route /two"
        )
        assert gateway.poll() is None

        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=60) == 0
    finally:
        for proc in (gateway, backend):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        log.close()
        print((tmp_path / "gateway.log").read_text()[-4000:])
    wait_for(lambda: run("pgrep", "-f", "/opt/a3s-gateway/bin/", check=False).stdout == "", "workers to exit")


def test_deb_purge_removes_files_data_and_user(installed_deb: Path) -> None:
    Path("/var/lib/a3s-gateway/acme.json").write_text("{}")
    dpkg("--purge", "a3s-gateway")
    assert not package_installed()
    for path in (
        BIN,
        str(PREFIX),
        "/etc/a3s-gateway",
        "/var/lib/a3s-gateway",
        "/lib/systemd/system/a3s-gateway.service",
        "/etc/systemd/system/multi-user.target.wants/a3s-gateway.service",
    ):
        assert not os.path.lexists(path), path
    with pytest.raises(KeyError):
        pwd.getpwnam("a3s-gateway")


# ------------------------------------------------------------------------------------------------ rpm


def test_rpm_metadata_files_config_and_scripts(packages: dict[str, Path]) -> None:
    rpm = str(packages["rpm"])
    info = run("rpm", "-qpi", rpm).stdout
    assert "Name        : a3s-gateway" in info
    assert f"Version     : {VERSION}" in info
    assert "License     : MIT" in info
    files = set(run("rpm", "-qpl", rpm).stdout.split())
    for path in (
        BIN,
        "/opt/a3s-gateway/bin/a3s-gateway",
        "/etc/a3s-gateway/gateway.toml",
        "/etc/a3s-gateway/conf.d",
        "/usr/lib/systemd/system/a3s-gateway.service",
        "/etc/logrotate.d/a3s-gateway",
        "/usr/share/licenses/a3s-gateway/LICENSE",
        "/var/lib/a3s-gateway",
    ):
        assert path in files, path
    assert "/etc/a3s-gateway/gateway.toml" in run("rpm", "-qp", "--configfiles", rpm).stdout
    scripts = run("rpm", "-qp", "--scripts", rpm).stdout
    assert "useradd --system" in scripts and "systemctl enable a3s-gateway.service" in scripts
    assert "--now" in scripts  # removal stops the service


def test_rpm_installs_into_a_temporary_root(packages: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    # --noscripts: the scriptlets would run chrooted into an empty root with no /bin/sh.
    run("rpm", "-i", "--root", str(root), "--nodeps", "--noscripts", str(packages["rpm"]))
    assert run("rpm", "--root", str(root), "-q", "a3s-gateway").stdout.startswith(f"a3s-gateway-{VERSION}-")
    assert (root / "opt/a3s-gateway/bin/a3s-gateway").is_file()
    assert os.readlink(root / "usr/bin/a3s-gateway") == "/opt/a3s-gateway/bin/a3s-gateway"
    assert (root / "etc/a3s-gateway/gateway.toml").read_text() == (PACKAGING / "gateway.toml").read_text()
    assert (root / "usr/lib/systemd/system/a3s-gateway.service").is_file()
