"""docs/ci.md: its GitHub Actions workflow and GitLab CI job parse as YAML, and every shell line
they run is one the README walkthrough runs (tests/test_readme.py runs those against Spack) —
up to the mirror URL and the credential options, which only a CI service can give. The lines
that fetch Spack itself and put it on PATH are the only others."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from readme_walkthrough import shell_lines

DOC = Path(__file__).resolve().parents[1] / "docs" / "ci.md"

#: Lines that set up Spack itself (the walkthrough starts with Spack set up).
SPACK_SETUP = ("git clone ", 'echo "$HOME/spack/bin"', 'export PATH="/opt/spack/bin:$PATH"')

#: Options only CI has (they name the job's credential variables), with their values.
CI_OPTIONS = {"--oci-username-variable", "--oci-password-variable"}


def _block(name: str) -> Any:
    m = re.search(rf"<!-- ci:{name} -->\s*```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert m, f"docs/ci.md has no ci:{name} block"
    return yaml.safe_load(m.group(1))


def _normalized(line: str) -> str:
    """The command with the mirror URL as ``<URL>`` and the CI-only options dropped."""
    words, out = shlex.split(line), []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w in CI_OPTIONS:
            skip = True
        elif w.startswith(("oci://", "oci+http://", "$SPACK_CACHE")):
            out.append("<URL>")
        else:
            out.append(w)
    return shlex.join(out)


def _commands(script: str) -> list[str]:
    """The commands of a shell snippet; ``if …; then CMD; fi`` counts as CMD."""
    found = []
    for line in script.splitlines():
        line = line.strip()
        m = re.fullmatch(r"if \[.*\]; then (.*); fi", line)
        found.append(m.group(1) if m else line)
    return [c for c in found if c and not c.startswith("#")]


def _github_commands() -> list[str]:
    workflow = _block("github")
    steps = workflow["jobs"]["spack"]["steps"]
    return [c for step in steps if "run" in step for c in _commands(step["run"])]


def _gitlab_commands() -> list[str]:
    job = _block("gitlab")["spack-build-cache"]
    return [
        c for part in ("before_script", "script") for line in job[part] for c in _commands(line)
    ]


@pytest.mark.parametrize(
    "commands", [_github_commands, _gitlab_commands], ids=["github", "gitlab"]
)
def test_ci_lines_are_walkthrough_lines(commands: Any) -> None:
    walkthrough = {_normalized(line) for line in shell_lines()}
    lines = commands()
    assert any(line.startswith("spack buildcache push --update-index") for line in lines)
    for line in lines:
        if line.startswith(SPACK_SETUP):
            continue
        assert _normalized(line) in walkthrough, f"{line!r} is not a README walkthrough line"
