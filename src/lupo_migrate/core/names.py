"""Text, checksums, file names and versions (functional core: no I/O).

Every function takes text or bytes and returns values; problems are
:class:`~lupo_migrate.core.model.Finding` values, never exceptions.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Final

import attrs

from lupo_migrate.core.model import Finding, Severity

__all__ = ["NameInfo", "checksum", "decode", "normalise", "parse_name", "version_key"]

_BOM: Final = "\ufeff"


# --------------------------------------------------------------------------- text and checksums


def normalise(text: str) -> str:
    """*text* without a leading BOM and with CRLF and CR line ends turned into LF."""
    if text.startswith(_BOM):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def checksum(content: str | bytes) -> str:
    """Hex SHA-256 of *content* with the BOM stripped and line ends normalised to LF.

    Args:
        content: the file's text, or its bytes (UTF-8 assumed for the BOM).

    Returns:
        64 lowercase hex digits; equal for the LF, CRLF and BOM variants of one text.
    """
    if isinstance(content, str):
        data = normalise(content).encode("utf-8")
    else:
        data = content.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, *, path: str | None = None) -> tuple[str | None, Finding | None]:
    """Decode UTF-8 *data* (BOM allowed) into normalised text.

    Returns:
        ``(text, None)``, or ``(None, finding)`` naming the byte offset and line of the first
        byte that is not UTF-8.
    """
    try:
        return normalise(data.decode("utf-8")), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, Finding(
            severity=Severity.ERROR,
            code="header.encoding",
            path=path,
            line=line,
            message=f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}",
            hint="save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        )


# ------------------------------------------------------------------------- names and versions


@attrs.frozen(kw_only=True)
class NameInfo:
    """What a file's name says.

    Attributes:
        id: the step id derived from the name: the path without suffix (and without ``.up`` /
            ``.down``; a Flyway undo ``U1__x`` names its ``V1__x``).
        version: the version the name starts with, dots for separators (``4_1_1_x`` -> 4.1.1).
        kind: ``up``, or ``down`` for ``x.down.sql`` and Flyway ``U1__x.sql``.
        flyway: the name is a Flyway versioned name, ``V<version>__<description>`` (two such
            files may not share a version).
        repeatable: the name is a Flyway repeatable one, ``R__<description>``: no version;
            it runs after the versioned files, and again whenever its content changes.
    """

    id: str
    version: str = ""
    kind: str = "up"
    flyway: bool = False
    repeatable: bool = False


_FLYWAY: Final = re.compile(r"^(?P<prefix>[VU])(?P<version>\d+(?:[._]\d+)*)__(?P<rest>.+)$")
_REPEATABLE: Final = re.compile(r"^R__(?P<rest>.+)$")
_LEADING_VERSION: Final = re.compile(r"^(?P<version>\d+(?:[._]\d+)*)(?:[_\-.]|$)", re.ASCII)


@functools.lru_cache(maxsize=16384)  # each file's name is read by discovery, chain and ledger
def parse_name(relpath: str, suffix: str | None = None) -> NameInfo:
    """Derive id, version and kind from a file's path relative to the migrations root.

    Args:
        relpath: POSIX path relative to the root (``sub/V1__add_users.sql``).
        suffix: the file-type suffix to strip; default: from the last dot of the name.

    Returns:
        The :class:`NameInfo`, e.g. ``V1__add_users.sql`` -> id ``V1__add_users``, version
        ``1``; ``1_x.down.sql`` -> id ``1_x``, version ``1``, kind ``down``; ``R__views.sql``
        -> id ``R__views``, no version, repeatable.
    """
    directory, _, name = relpath.rpartition("/")
    if suffix and name.lower().endswith(suffix.lower()) and len(name) > len(suffix):
        stem = name[: -len(suffix)]
    else:
        stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    kind = "up"
    for marker in (".down", ".up"):
        if stem.lower().endswith(marker) and len(stem) > len(marker):
            stem, kind = stem[: -len(marker)], marker[1:]
            break
    version = ""
    flyway = _FLYWAY.match(stem)
    if flyway:
        version = flyway["version"].replace("_", ".")
        if flyway["prefix"] == "U":
            stem, kind = "V" + stem[1:], "down"
    elif _REPEATABLE.match(stem):
        step_id = f"{directory}/{stem}" if directory else stem
        return NameInfo(id=step_id, kind=kind, repeatable=True)
    else:
        leading = _LEADING_VERSION.match(stem)
        if leading:
            version = leading["version"].replace("_", ".")
    step_id = f"{directory}/{stem}" if directory else stem
    return NameInfo(id=step_id, version=version, kind=kind, flyway=flyway is not None)


_VERSION_PART: Final = re.compile(r"\d+|[^\W\d_]+", re.ASCII)


def version_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """A natural sort key for version text: ``V2 < V10``, ``4.1.2 < 4.1.10``.

    Digit runs compare as numbers and come before letter runs; separators (``.``, ``_``, ``-``)
    are ignored; a leading ``v``/``V`` before a digit is dropped; a shorter version that is a
    prefix of a longer one comes first (``4.1 < 4.1.0``). Empty text gives ``()``.
    """
    text = text.strip()
    if text[:1] in ("v", "V") and text[1:2].isdigit():
        text = text[1:]
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.lower())
        for part in _VERSION_PART.findall(text)
    )
