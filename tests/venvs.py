"""Fresh virtual environments for the tests that install something as a user would, offline.

A test may only talk to loopback, so nothing is downloaded: a new environment sees packages
already installed here through a ``.pth`` file that adds their folder as a site directory
(``site.addsitedir``, which also reads the ``.pth`` files there, such as an editable
install's). Which ones it sees is the caller's choice: all of this interpreter's (the plugin
example), or only those a wheel declares it needs, found one by one (:func:`closure`), so a
dependency the wheel forgot to declare is missing there as it would be on a user's machine.

Works whether the suite itself runs in a virtual environment or not (a venv made with
``--system-site-packages`` from inside another venv would see the base interpreter's packages,
not the venv's).
"""

from __future__ import annotations

import os
import re
import site
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

__all__ = ["closure", "make_venv", "requirements_of_wheel", "run", "site_dirs"]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command offline and quietly (pip asks no questions, checks for no new pip)."""
    env = {k: v for k, v in os.environ.items() if k != "LUPO_MIGRATE_NO_PLUGINS"}
    env.update(
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIP_NO_INDEX="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def site_dirs() -> list[Path]:
    """This interpreter's site directories (a venv's own, or the system's and the user's)."""
    found = [Path(p) for p in site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        found.append(Path(site.getusersitepackages()))
    purelib = Path(sysconfig.get_paths()["purelib"])
    if purelib not in found:
        found.append(purelib)
    return [p for p in found if p.is_dir()]


def make_venv(where: Path, see: Sequence[Path]) -> Path:
    """A new virtual environment at *where* (with pip, no system packages) that also sees the
    packages in the folders *see*; returns its ``python``."""
    done = run(sys.executable, "-m", "venv", where)
    assert done.returncode == 0, done.stdout + done.stderr
    python = where / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    assert purelib.returncode == 0, purelib.stderr
    lines = [f"import site; site.addsitedir({str(folder)!r})" for folder in see]
    (Path(purelib.stdout.strip()) / "_lupo_tests_see.pth").write_text(
        "\n".join(lines) + "\n", encoding="utf-8"
    )
    return python


def requirements_of_wheel(wheel: Path) -> list[Requirement]:
    """The ``Requires-Dist`` lines of *wheel* (extras' ones included, with their markers)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode("utf-8")
    return [Requirement(v) for k, _, v in _headers(text) if k == "Requires-Dist"]


def _headers(text: str) -> Iterable[tuple[str, str, str]]:
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            yield key, sep, value


def _wanted(requirement: Requirement, extras: Sequence[str]) -> bool:
    marker: Marker | None = requirement.marker
    if marker is None:
        return True
    return any(marker.evaluate({"extra": extra}) for extra in ("", *extras))


def closure(requirements: Iterable[Requirement], into: Path, extras: Sequence[str] = ()) -> Path:
    """A folder *into* holding (as links) the installed distributions *requirements* name
    (with *extras*), and everything those need in turn; returns it.

    Raises:
        AssertionError: a needed distribution is not installed here.
    """
    into.mkdir(parents=True, exist_ok=True)
    todo = [r for r in requirements if _wanted(r, extras)]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        key = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise AssertionError(f"{requirement.name} is needed but not installed here") from None
        for entry in {Path(str(f)).parts[0] for f in dist.files or ()}:
            source = Path(str(dist.locate_file(entry)))
            link = into / entry
            if entry != ".." and source.exists() and not link.exists():
                link.symlink_to(source)
        todo += [
            Requirement(text)
            for text in dist.requires or ()
            if _wanted(Requirement(text), sorted(requirement.extras))
        ]
    return into
