"""Tests of the C kit's build: finding the compiler, what a failed build says, the build cache and where it lives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from ckit_harness import GOOD_C, system_for, target_for, write

from pytest_spekvm import ckit
from pytest_spekvm.ckit import CBuildError, c_adapter, find_compiler
from pytest_spekvm.reference.vcpu import ExitReason, GuestExit


@pytest.fixture
def compiler_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every command the kit starts from now on (they still run)."""
    calls: list[list[str]] = []
    real = subprocess.Popen

    def spy(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        calls.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    return calls


def test_no_compiler_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CC and with no compiler on PATH, the error says what was looked for and how to get one."""
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(CBuildError, match=r"no C compiler was found on PATH \(looked for \$CC, .* cc, gcc and clang; install gcc or clang"):
        find_compiler()


def test_compiler_from_cc_keeps_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """CC may carry arguments; the kit runs the compiler it names with them."""
    gcc = shutil.which("gcc")
    assert gcc is not None
    monkeypatch.setenv("CC", "gcc -Wextra")
    assert [gcc, "-Wextra"] == find_compiler()


def test_compiler_default_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CC the kit finds a compiler on PATH (the one Python was built with, cc, gcc or clang)."""
    monkeypatch.delenv("CC", raising=False)
    argv = find_compiler()
    assert os.access(argv[0], os.X_OK)


def test_compiler_that_cannot_be_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler the system cannot start is a CBuildError naming it, and no half-started job is left behind."""
    monkeypatch.delenv("CC", raising=False)
    started: list[subprocess.Popen[str]] = []
    real = subprocess.Popen

    def flaky(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        if started:
            raise PermissionError(13, "Permission denied")
        started.append(real(argv, *args, **kwargs))
        return started[0]

    monkeypatch.setattr(subprocess, "Popen", flaky)
    with pytest.raises(CBuildError, match=r"because the C compiler .* cannot be run \(\[Errno 13\] Permission denied\); install gcc or clang"):
        target_for(tmp_path).build()
    assert started[0].returncode is not None


def test_compiler_that_prints_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler that fails silently still gets a message that says so."""
    monkeypatch.setenv("CC", "false")
    with pytest.raises(CBuildError, match=r"reported errors in the glue code cffi generated .*:\n    \(the compiler printed nothing\)"):
        target_for(tmp_path).build()


def test_missing_python_headers_are_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Python.h the error says the Python development headers are missing."""
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path / "no-python-headers"))
    with pytest.raises(CBuildError, match=r"(Python|pyconfig).h: No such file.*\n(.*\n)*  \(the Python development headers are missing: install python3-dev"):
        target_for(tmp_path).build()


@pytest.mark.parametrize(("role", "entry", "signature"), [
    ("setup", "setup_missing", "void setup_missing(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2)"),
    ("run", "run_missing", "u64 run_missing(struct spekvm_vcpu *vcpu)"),
])
def test_missing_entry_point_is_named(tmp_path: Path, role: str, entry: str, signature: str) -> None:
    """An entry point the sources do not define is named, with the signature to define, and nothing is cached."""
    target = target_for(tmp_path, **{role: entry})
    message = (
        f"Cannot use the C target (switch.c) because its entry point {role}='{entry}' is defined in none of its sources "
        f"(define `{signature}` in one of them, not static, or pass {role}= the name of the function that is)"
    )
    with pytest.raises(CBuildError) as info:
        target.build()
    assert message == str(info.value)
    assert [] == list((tmp_path / "build").glob("*/manifest.json"))
    assert [] == list((tmp_path / "build").glob("*/*.so"))


def test_entry_point_with_the_wrong_signature_is_a_compile_error(tmp_path: Path) -> None:
    """An entry point defined with another signature fails to compile, and the message gives the expected one."""
    target = target_for(tmp_path, GOOD_C.replace("u64 run(", "int run("))
    with pytest.raises(CBuildError, match=r"(?s)error: conflicting types for .run.*spekvm_entry.h is the kit's declaration of the entry points: "
                       r"setup is `void setup\(struct spekvm_vcpu \*vcpu, u64 host_mdcr_el2\)`, run is `u64 run\(struct spekvm_vcpu \*vcpu\)`"):
        target.build()


def test_undefined_symbol_is_named(tmp_path: Path) -> None:
    """A function the sources call but nobody defines is named when the build is loaded."""
    code = "void helper_nobody_defines(void);\n" + GOOD_C.replace("return spekvm_run_guest", "helper_nobody_defines();\n\treturn spekvm_run_guest")
    with pytest.raises(CBuildError, match=r"because the symbol 'helper_nobody_defines' is used but defined in none of its sources \(add the file"):
        target_for(tmp_path, code).build()


def test_link_error_shows_the_linker_output(tmp_path: Path) -> None:
    """A link that fails is reported with the linker's message."""
    with pytest.raises(CBuildError, match=r"reported errors in the link of switch.c:\n.*spekvm_no_such_library"):
        target_for(tmp_path, ldflags=["-lspekvm_no_such_library"]).build()


@pytest.mark.parametrize(("kw", "message"), [
    ({"sources": []}, "Cannot build the C target because sources= is empty (give the C files of the world switch)"),
    ({"sources": ["nowhere.c"]}, "Cannot build the C target because the source {tmp}/nowhere.c does not exist (relative paths are relative to the adapter module's folder, or to base_dir= when given)"),
    ({"setup": "setup vcpu"}, "Cannot build the C target (switch.c) because setup='setup vcpu' is not the name of a C function"),
    ({"run": "1run"}, "Cannot build the C target (switch.c) because run='1run' is not the name of a C function"),
    ({"run": "setup"}, "Cannot build the C target (switch.c) because setup= and run= both name 'setup' (they are two functions with different signatures)"),
])
def test_bad_arguments_are_reported(tmp_path: Path, kw: dict[str, Any], message: str) -> None:
    """Arguments that cannot describe a build are reported before anything is compiled."""
    write(tmp_path / "switch.c", GOOD_C)
    arguments: dict[str, Any] = {"sources": ["switch.c"], "setup": "setup", "run": "run", "base_dir": tmp_path, **kw}
    with pytest.raises(CBuildError) as info:
        c_adapter(**arguments).build()
    assert message.format(tmp=tmp_path) == str(info.value)


def test_unusable_build_directory_is_reported(tmp_path: Path) -> None:
    """A build directory that cannot be created is named, with how to choose another."""
    write(tmp_path / "file", "")
    with pytest.raises(CBuildError, match=r"because the build directory .*/file/sub/switch-\w+ cannot be created \(.*\); point SPEKVM_BUILD_DIR or build_dir= at a writable folder"):
        target_for(tmp_path, build_dir=tmp_path / "file" / "sub").build()


# --------------------------------------------------------------------------------- the cache


def test_second_build_is_a_cache_hit(tmp_path: Path, compiler_calls: list[list[str]]) -> None:
    """A second target for the same unchanged sources loads the cached build without running the compiler."""
    first = target_for(tmp_path).build()
    assert not first.from_cache
    assert 3 == len(compiler_calls)  # the glue, switch.c, the link
    compiler_calls.clear()
    second = target_for(tmp_path).build()
    assert second.from_cache
    assert [] == compiler_calls
    assert first.path == second.path
    assert "$ " in second.log  # the log of the build it came from


@pytest.mark.parametrize("change", ["source", "included header"])
def test_changed_input_rebuilds(tmp_path: Path, change: str, compiler_calls: list[list[str]]) -> None:
    """Changing a source, or a header it includes, rebuilds; the old extension is removed."""
    header = write(tmp_path / "src" / "mask.h", "#define MASK GENMASK(4, 0)\n")
    code = '#include "mask.h"\n' + GOOD_C.replace("GENMASK(4, 0)", "MASK")
    first = target_for(tmp_path, code).build()
    assert not first.from_cache
    if change == "source":
        write(tmp_path / "src" / "switch.c", code + "/* changed */\n")
    else:
        header.write_text("#define MASK GENMASK(3, 0)\n")
    compiler_calls.clear()
    rebuilt = target_for(tmp_path, (tmp_path / "src" / "switch.c").read_text()).build()
    assert not rebuilt.from_cache
    assert compiler_calls
    assert rebuilt.path != first.path
    assert not first.path.exists()


def test_touching_without_change_is_still_a_hit(tmp_path: Path) -> None:
    """The cache is keyed by content: a new modification time alone does not rebuild."""
    first = target_for(tmp_path).build()
    source = tmp_path / "src" / "switch.c"
    os.utime(source, (source.stat().st_atime + 60, source.stat().st_mtime + 60))
    again = c_adapter(sources=[source], setup="setup", run="run", build_dir=tmp_path / "build").build()
    assert again.from_cache
    assert first.path == again.path


@pytest.mark.parametrize("damage", ["extension truncated", "extension deleted", "dependency gone", "manifest garbled"])
def test_damaged_cache_rebuilds(tmp_path: Path, damage: str) -> None:
    """A cache entry that cannot be used is rebuilt, not reported."""
    first = target_for(tmp_path).build()
    manifest = first.path.parent / "manifest.json"
    if damage == "extension truncated":
        # A file of that name that was never loaded: this process has the real one loaded already.
        data = json.loads(manifest.read_text())
        data["module"], data["extension"] = "_spekvm_truncated", "_spekvm_truncated.so"
        manifest.write_text(json.dumps(data))
        (first.path.parent / "_spekvm_truncated.so").write_bytes(first.path.read_bytes()[:100])
    elif damage == "extension deleted":
        first.path.unlink()
    elif damage == "dependency gone":
        data = json.loads(manifest.read_text())
        data["deps"][str(tmp_path / "src" / "gone.h")] = "0" * 64
        manifest.write_text(json.dumps(data))
    else:
        manifest.write_text("{not json")
    rebuilt = target_for(tmp_path).build()
    assert not rebuilt.from_cache
    s = system_for(target_for(tmp_path))
    assert ExitReason("hvc") == s.run_vcpu(0, [GuestExit("hvc")])


def test_build_directory_defaults_beside_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without build_dir= or SPEKVM_BUILD_DIR, the build goes to .spekvm-build/ beside the first source."""
    monkeypatch.delenv(ckit.BUILD_DIR_ENV, raising=False)
    build = target_for(tmp_path, build_dir=None).build()
    assert tmp_path / "src" / ".spekvm-build" == build.path.parent.parent


def test_build_directory_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEKVM_BUILD_DIR chooses the build directory when build_dir= does not."""
    monkeypatch.setenv(ckit.BUILD_DIR_ENV, str(tmp_path / "elsewhere"))
    build = target_for(tmp_path, build_dir=None).build()
    assert tmp_path / "elsewhere" == build.path.parent.parent


def test_build_directory_falls_back_to_the_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where .spekvm-build/ cannot be made beside the sources, the build goes to the user cache folder."""
    monkeypatch.delenv(ckit.BUILD_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write(tmp_path / "src" / ".spekvm-build", "a file where the folder would go")
    build = target_for(tmp_path, build_dir=None).build()
    assert tmp_path / "cache" / "pytest-spekvm" == build.path.parent.parent
