"""Release artifacts, checked without building any: scripts/check_wheel.py (its glibc check on
real ELF files, the installed extension among them; its tag checks), the release workflow's
shape, docs/releasing.md, and the README's statements about the demo and the first build."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load_check_wheel() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_wheel", ROOT / "scripts/check_wheel.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cw = _load_check_wheel()

needs_readelf = pytest.mark.skipif(
    shutil.which("readelf") is None, reason="readelf (binutils) is not on PATH"
)


def _installed_extension() -> tuple[Path, list[str]]:
    """The installed native module and the platform tags of the wheel it came from."""
    from importlib.metadata import distribution

    import spack_oci_rs._native as native

    wheel_meta = distribution("spack-oci-rs").read_text("WHEEL") or ""
    tags = [
        line.split(":", 1)[1].strip()
        for line in wheel_meta.splitlines()
        if line.startswith("Tag:")
    ]
    return Path(native.__file__ or ""), [t.rsplit("-", 1)[-1] for t in tags]


@needs_readelf
def test_installed_extension_needs_no_glibc_above_its_wheel_tag() -> None:
    """The wheel's manylinux tag tells the truth about the extension it carries; with
    SPACK_OCI_RS_EXPECT_GLIBC (CI: 2.17) the installed wheel must be that manylinux."""
    so, platforms = _installed_extension()
    needs = cw.glibc_needs(so)
    assert needs, f"{so}: readelf found no GLIBC_ version needed (not a glibc ELF?)"
    tagged = [p for t in platforms if (p := cw.platform_glibc(t))]
    if not tagged:
        pytest.skip(f"the installed wheel is not manylinux-tagged ({platforms}): a local build")
    assert cw.check_elf(so, min(g for g, _ in tagged)) == []
    expect = os.environ.get("SPACK_OCI_RS_EXPECT_GLIBC")
    if expect:
        assert cw.check_elf(so, cw.parse_version(expect)) == []
        assert all(g <= cw.parse_version(expect) for g, _ in tagged), platforms


@needs_readelf
def test_check_flags_a_binary_that_needs_a_newer_glibc(tmp_path: Path) -> None:
    """/bin/ls of this machine (Debian 12: glibc 2.36) needs GLIBC_2.34 (__libc_start_main),
    so as a "manylinux2014" wheel it must be refused, naming the file and the version."""
    ls = Path("/bin/ls").resolve()
    assert (2, 34) in cw.glibc_needs(ls)
    assert cw.check_elf(ls, (2, 40)) == []
    name = "spack_oci_rs-0.1.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    wheel = tmp_path / name
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(ls, "spack_oci_rs/_native.abi3.so")
    problems = cw.check_wheel(wheel, (2, 17), auditwheel=False)
    assert f"{wheel.name}:spack_oci_rs/_native.abi3.so: needs GLIBC_2.34 (above 2.17)" in problems
    assert all("platform tag" not in p and "ABI tag" not in p for p in problems), problems
    assert cw.main(["--elf", "--max-glibc", "2.17", str(ls)]) == 1
    assert cw.main(["--elf", "--max-glibc", "2.99", str(ls)]) == 0


def test_tag_checks() -> None:
    ok = Path("spack_oci_rs-0.1.0-cp310-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")
    assert cw.check_tags(ok, (2, 17)) == []
    assert cw.platform_glibc("manylinux2014_x86_64") == ((2, 17), "x86_64")
    assert cw.platform_glibc("manylinux_2_28_aarch64") == ((2, 28), "aarch64")
    assert cw.platform_glibc("linux_x86_64") is None
    host = Path("spack_oci_rs-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl")
    assert cw.check_tags(host, (2, 17)) == [
        f"{host.name}: ABI tag 'cp311', expected 'abi3'",
        f"{host.name}: platform tag 'manylinux_2_34_x86_64' is above 2.17",
    ]
    plain = Path("spack_oci_rs-0.1.0-cp310-abi3-linux_x86_64.whl")
    assert cw.check_tags(plain, (2, 17)) == [
        f"{plain.name}: platform tag 'linux_x86_64' is not a manylinux tag"
    ]
    with pytest.raises(ValueError, match=r"not a glibc version: '2\.x'"):
        cw.parse_version("2.x")


def _workflow() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / ".github/workflows/release.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_release_workflow_builds_each_wheel_on_its_own_architecture() -> None:
    wf = _workflow()
    jobs = wf["jobs"]
    assert wf[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    matrix = jobs["wheel"]["strategy"]["matrix"]["include"]
    assert {(m["arch"], m["runner"]) for m in matrix} == {
        ("x86_64", "ubuntu-latest"),
        ("aarch64", "ubuntu-24.04-arm"),
    }
    steps = jobs["wheel"]["steps"]
    build = next(s for s in steps if str(s.get("uses", "")).startswith("PyO3/maturin-action"))
    assert build["with"]["manylinux"] == "2014"
    assert "${{ matrix.arch }}-unknown-linux-gnu" == build["with"]["target"]
    runs = "\n".join(str(s.get("run", "")) for s in steps)
    assert "scripts/check_wheel.py --max-glibc 2.17 dist/*.whl" in runs
    assert "./scripts/test.sh" in runs and "SPACK_OCI_RS_EXPECT_GLIBC=2.17" in runs
    publish = jobs["publish"]
    assert set(publish["needs"]) == {"wheel", "sdist"}
    assert publish["permissions"] == {"id-token": "write"}
    assert any("pypa/gh-action-pypi-publish" in str(s.get("uses")) for s in publish["steps"])
    # Every script the workflow runs exists in the repository.
    for script in set(re.findall(r"scripts/[\w.-]+", runs)):
        assert (ROOT / script).is_file(), script


def test_releasing_doc_names_what_exists() -> None:
    doc = (ROOT / "docs/releasing.md").read_text()
    for path in sorted(set(re.findall(r"(?:scripts|tests|\.github/workflows)/[\w.-]+\.\w+", doc))):
        assert (ROOT / path).is_file(), f"docs/releasing.md names {path}, which does not exist"
    for step in ("Version bump", "Tag and push the tag", "trusted publishing", "auditwheel"):
        assert step in doc


def _readme_demo_sample() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"prints a summary:\n\n```\n(.*?)```", readme, re.S)
    assert m, "README.md: no demo sample after 'prints a summary:'"
    return m.group(1).splitlines()


def test_readme_demo_sample_is_what_demo_prints() -> None:
    """Each line of the README's sample has the shape of the demo's line with that label, in
    the demo's order (the numbers are one real run's)."""
    source = (ROOT / "scripts/demo.py").read_text()
    prints = re.findall(r'print\(\s*f"([a-z-]+) +(.*?)"\s*(?:f"(.*?)"\s*)?\)', source, re.S)
    assert [p[0] for p in prints] == [line.split()[0] for line in _readme_demo_sample()]
    for (label, first, second), line in zip(prints, _readme_demo_sample(), strict=True):
        fields = re.sub(r"\\\{[^}]*\\\}", ".+?", re.escape(first + second))
        shape = re.escape(label) + r" +" + fields
        assert re.fullmatch(shape, line), f"README demo line {line!r} is not {label}'s format"


def test_readme_states_the_first_build_time() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"first build takes\s+about\s+\d+\s+minutes\s+on\s+2\s+cores", readme)
