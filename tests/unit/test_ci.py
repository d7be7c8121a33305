"""The README's test command and CI's are one script (``.ci/test``), so what a contributor runs is what CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_and_ci_run_call_the_same_test_script() -> None:
    readme = (ROOT / "README.md").read_text()
    ci_commands = [line for line in (ROOT / ".ci/run").read_text().splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    assert "```bash\n.ci/test\n```" in readme
    assert ci_commands[-1] == "exec .ci/test"
    script = (ROOT / ".ci/test").read_text()
    assert "pytest" in script and (ROOT / ".ci/test").stat().st_mode & 0o111
