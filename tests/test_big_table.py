"""A 1,000,000-row table (issue 18's acceptance): ``ADD COLUMN`` then rollback, and ``DROP
COLUMN`` then rollback, work with the default settings (backup limit 100,000 rows) on every
engine, the additive change keeping no copy of the table's rows at all, the drop only the
dropped column's values by key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from databases import fresh_database
from lupo_migrate.cli import main
from test_rollback_keeps import _definition, _sql

ROWS = 1_000_000
KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
]


def _fill(url: str) -> None:
    """``big (id PK, v, note)`` with ROWS rows, made by the server in a few statements."""
    _sql(url, "CREATE TABLE big (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(20))")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if url.startswith("postgresql"):
            conn.exec_driver_sql(
                f"INSERT INTO big SELECT n, MOD(n, 97), 'n' || n FROM generate_series(1, {ROWS}) n"
            )
        elif url.startswith("mysql"):  # MariaDB's sequence engine
            conn.exec_driver_sql(
                f"INSERT INTO big SELECT seq, MOD(seq, 97), CONCAT('n', seq) FROM seq_1_to_{ROWS}"
            )
        else:  # a recursive count
            conn.exec_driver_sql(
                "INSERT INTO big WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1"
                f" FROM c WHERE n < {ROWS}) SELECT n, n % 97, 'n' || n FROM c"
            )
    engine.dispose()


def _rows(url: str) -> tuple[int, int, int]:
    """Count, a sum over the values and the number of distinct notes: what a rollback that
    lost or changed anything would show."""
    row = _sql(url, "SELECT COUNT(*), SUM(v), COUNT(DISTINCT note) FROM big")[0]
    return int(row[0]), int(row[1]), int(row[2])


def _backups(url: str) -> list[tuple[str, int]]:
    """lupo_migrate's backup tables now and their rows."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if url.startswith("sqlite"):
                conn.exec_driver_sql(
                    "ATTACH DATABASE ? AS b",
                    (str(Path(sa.make_url(url).database or "").with_suffix(".lupo-backups.db")),),
                )
                names = conn.exec_driver_sql(
                    "SELECT name FROM b.sqlite_master WHERE type = 'table'"
                ).scalars()
                schema = "b"
            else:
                schema = (
                    "lupo_orchestration"
                    if url.startswith("postgresql")
                    else f"{sa.make_url(url).database}_lupo_orchestration"
                )
                names = conn.exec_driver_sql(
                    "SELECT table_name FROM information_schema.tables"
                    f" WHERE table_schema = '{schema}' AND table_name LIKE 'lupo%%bk%%'"
                ).scalars()
            found = []
            for name in list(names):
                q = (
                    f'"{schema}"."{name}"'
                    if not url.startswith("mysql")
                    else f"`{schema}`.`{name}`"
                )
                found.append(
                    (str(name), int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {q}").scalar_one()))
                )
            return sorted(found)
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_million_rows_add_and_drop_a_column_and_roll_back(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fresh_database(kind, tmp_path) as url:
        _fill(url)
        before = (_definition(url, "big"), _rows(url))
        migrations = tmp_path / "m"
        migrations.mkdir()
        (migrations / "V1__add.sql").write_text("ALTER TABLE big ADD COLUMN extra INT;\n")
        assert main(["apply", str(migrations), "--db", url]) == 0, capsys.readouterr()
        run = re.findall(r"run (\w+): completed", capsys.readouterr().out)[0]
        kept = _backups(url)
        assert all(rows <= 1 for _, rows in kept), kept  # the material only: no copy
        assert main(["rollback", run, str(migrations), "--db", url]) == 0, capsys.readouterr()
        capsys.readouterr()
        assert (_definition(url, "big"), _rows(url)) == before

        (migrations / "V1__add.sql").unlink()
        (migrations / "V2__drop.sql").write_text("ALTER TABLE big DROP COLUMN note;\n")
        assert main(["apply", str(migrations), "--db", url]) == 0, capsys.readouterr()
        run = re.findall(r"run (\w+): completed", capsys.readouterr().out)[0]
        kept = _backups(url)
        # the dropped column's values by key, no copy of the whole rows
        assert [rows for _, rows in kept if rows > 1] == [ROWS], kept
        assert main(["rollback", run, str(migrations), "--db", url]) == 0, capsys.readouterr()
        _out, err = capsys.readouterr()
        assert "the order differs" not in err  # note was last: back in its place
        assert _definition(url, "big") == before[0]
        assert _rows(url) == before[1]
