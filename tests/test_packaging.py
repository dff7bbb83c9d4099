"""The distributions: the wheel and the source distribution carry the licence, the source
distribution carries everything the project's own tests need, and the metadata is complete."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED_BY_THE_TESTS = ("tests", "examples", "benchmarks", "constraints")
LEFT_OUT = {"__pycache__", ".spekvm-build", ".hypothesis", ".pytest_cache"}


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The source distribution and the wheel built from it, as `python -m build` makes them."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def _source_files() -> set[str]:
    found = set()
    for top in NEEDED_BY_THE_TESTS:
        for path in (ROOT / top).rglob("*"):
            relative = path.relative_to(ROOT)
            if path.is_file() and not LEFT_OUT & set(relative.parts) and path.suffix not in (".pyc", ".so", ".o", ".d"):
                found.add(relative.as_posix())
    return found


def test_sdist_carries_what_the_tests_need(dists: tuple[Path, Path]) -> None:
    """Every file of tests/, examples/, benchmarks/ and constraints/, the licence and ./check are in the source distribution."""
    with tarfile.open(dists[0]) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    wanted = _source_files() | {"LICENSE", "check", "pyproject.toml", "README.md", "tests/conftest.py"}
    assert set() == wanted - names


def test_wheel_carries_the_licence_and_no_tests(dists: tuple[Path, Path]) -> None:
    """The wheel ships LICENSE in its metadata folder, declares MIT as a licence expression, and installs no tests."""
    with zipfile.ZipFile(dists[1]) as wheel:
        names = set(wheel.namelist())
        metadata = Parser().parsestr(wheel.read("pytest_spekvm-0.1.0.dist-info/METADATA").decode())
    assert "pytest_spekvm-0.1.0.dist-info/licenses/LICENSE" in names
    assert [] == sorted(n for n in names if n.startswith(("tests/", "examples/", "benchmarks/")))
    assert "MIT" == metadata["License-Expression"]
    assert "pytest-spekvm developers" == metadata["Author"]
    assert {"Programming Language :: Python :: 3.11", "Programming Language :: Python :: 3.12",
            "Programming Language :: Python :: 3.13", "Operating System :: POSIX"} <= set(metadata.get_all("Classifier"))
    assert not any("coverage" in r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r)
