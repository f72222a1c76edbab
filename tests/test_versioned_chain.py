"""Versioned files are a chain (issue 19, point 6), as a Flyway user expects.

``V1``, ``V2``, ``V3`` without headers depend each on the one before; ``--upto`` and
``baseline --upto`` take everything before; a file older than the highest applied version is
refused unless ``--out-of-order``; two ``V30__`` files are refused; ``R__`` files run last and
again when edited; ``--target 5`` is refused with a hint to ``--upto``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from databases import table_names
from lupo_migrate import descendants, errors
from lupo_migrate.cli import entry, main
from lupo_migrate.files.discover import load_steps


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


THREE = {
    "V1__a.sql": "CREATE TABLE t1 (id INTEGER PRIMARY KEY);\n",
    "V2__b.sql": "CREATE TABLE t2 (id INTEGER PRIMARY KEY);\n",
    "V3__c.sql": "CREATE TABLE t3 (id INTEGER PRIMARY KEY);\n",
}


def plan_json(capsys: pytest.CaptureFixture[str], root: Path, *more: str) -> dict[str, object]:
    code, out, err = run(capsys, "plan", str(root), "--format", "json", *more)
    assert code == 0, err
    data: dict[str, object] = json.loads(out)
    return data


# ------------------------------------------------------------------------------- the chain


class TestChain:
    def test_header_less_versioned_files_depend_on_the_one_before(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """V1, V2, V3: three generations, each depending on its predecessor."""
        root = write(tmp_path / "m", THREE)
        data = plan_json(capsys, root)
        steps = data["steps"]
        assert isinstance(steps, list)
        assert [(s["id"], s["depends_on"]) for s in steps] == [
            ("V1__a", []),
            ("V2__b", ["V1__a"]),
            ("V3__c", ["V2__b"]),
        ]
        assert data["generations"] == [["V1__a"], ["V2__b"], ["V3__c"]]

    def test_versions_are_compared_as_numbers_and_other_name_forms_chain_too(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """1_x.up.sql, 4.1.2_x.sql, 4.1.10_x.sql: one chain in version order (10 after 2)."""
        root = write(
            tmp_path / "m",
            {
                "4.1.10_d.sql": "SELECT 1;\n",
                "1_a.up.sql": "SELECT 1;\n",
                "1_a.down.sql": "SELECT 1;\n",
                "4.1.2_c.sql": "SELECT 1;\n",
                "2_b.up.sql": "SELECT 1;\n",
            },
        )
        steps = plan_json(capsys, root)["steps"]
        assert isinstance(steps, list)
        assert [(s["id"], s["depends_on"]) for s in steps] == [
            ("1_a", []),
            ("2_b", ["1_a"]),
            ("4.1.2_c", ["2_b"]),
            ("4.1.10_d", ["4.1.2_c"]),
        ]

    def test_dependants_of_the_first_file_are_all_the_later_ones(self, tmp_path: Path) -> None:
        """What a partial (B-scope) rollback of V1 must undo: V2 and V3 too."""
        steps = load_steps(write(tmp_path / "m", THREE))
        assert descendants(steps, ["V1__a"]) == {"V1__a", "V2__b", "V3__c"}
        assert descendants(steps, ["V2__b"]) == {"V2__b", "V3__c"}

    def test_a_header_saying_depends_on_is_kept(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """A header's depends_on (even empty) says otherwise; the next file still follows it."""
        root = write(
            tmp_path / "m",
            {**THREE, "V2__b.sql": "-- depends_on: []\nCREATE TABLE t2 (id INTEGER);\n"},
        )
        steps = plan_json(capsys, root)["steps"]
        assert isinstance(steps, list)
        assert {s["id"]: s["depends_on"] for s in steps} == {
            "V1__a": [],
            "V2__b": [],
            "V3__c": ["V2__b"],
        }

    def test_a_manifest_entry_is_kept(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """Files a manifest lists take its order; the files it does not list still chain."""
        root = write(tmp_path / "m", THREE)
        (tmp_path / "manifest.yaml").write_text(
            "chain: false\nsteps:\n  - V2__b.sql\n", encoding="utf-8"
        )
        steps = plan_json(capsys, root, "--manifest", str(tmp_path / "manifest.yaml"))["steps"]
        assert isinstance(steps, list)
        assert {s["id"]: s["depends_on"] for s in steps} == {
            "V1__a": [],
            "V2__b": [],
            "V3__c": ["V2__b"],
        }

    def test_upto_plans_everything_before(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """plan --upto V2__b: V1 and V2."""
        root = write(tmp_path / "m", THREE)
        steps = plan_json(capsys, root, "--upto", "V2__b")["steps"]
        assert isinstance(steps, list)
        assert [s["id"] for s in steps] == ["V1__a", "V2__b"]


# ------------------------------------------------------------------------------- baseline


class TestBaseline:
    def test_baseline_upto_records_everything_before_and_apply_runs_only_the_rest(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, database_url: str
    ) -> None:
        """The database has t1 and t2 already; baseline --upto V2__b records V1 and V2, and the
        next apply runs V3 alone (it used to run V1 again, which failed)."""
        engine = sa.create_engine(database_url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t1 (id INTEGER PRIMARY KEY)"))
            conn.execute(sa.text("CREATE TABLE t2 (id INTEGER PRIMARY KEY)"))
        engine.dispose()
        root = write(tmp_path / "m", THREE)
        code, out, err = run(capsys, "baseline", str(root), "--db", database_url, "--upto", "V2__b")
        assert code == 0, err
        assert "2 step(s) recorded as applied" in out
        code, out, err = run(capsys, "apply", str(root), "--db", database_url)
        assert code == 0, err
        assert "1 of 1 step(s) applied" in out
        assert {"t1", "t2", "t3"} <= table_names(database_url)


# ---------------------------------------------------------------------------- out of order


class TestOutOfOrder:
    def test_an_older_file_added_later_is_refused_before_anything_runs(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, database_url: str
    ) -> None:
        """V1 and V3 applied, then V2 appears: refused (exit 6), naming the file, both
        versions and --out-of-order; nothing runs. With --out-of-order it is applied."""
        root = write(tmp_path / "m", {k: v for k, v in THREE.items() if k != "V2__b.sql"})
        code, _, err = run(capsys, "apply", str(root), "--db", database_url)
        assert code == 0, err
        write(root, {"V2__b.sql": THREE["V2__b.sql"]})
        code, out, err = run(capsys, "apply", str(root), "--db", database_url)
        assert code == errors.PlanError.exit_code == 6
        assert "V2__b.sql (version 2)" in err
        assert "version 3 (V3__c.sql)" in err
        assert "--out-of-order" in err
        assert len(err.strip().splitlines()) == 1
        assert "t2" not in table_names(database_url)
        code, out, err = run(capsys, "apply", str(root), "--db", database_url, "--out-of-order")
        assert code == 0, err
        assert "1 of 1 step(s) applied" in out
        assert "t2" in table_names(database_url)

    def test_the_setting_allows_it_too(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """out_of_order = true in the settings file says what --out-of-order says."""
        url = f"sqlite:///{tmp_path}/x.db"
        root = write(tmp_path / "m", {k: v for k, v in THREE.items() if k != "V2__b.sql"})
        assert run(capsys, "apply", str(root), "--db", url)[0] == 0
        write(root, {"V2__b.sql": THREE["V2__b.sql"]})
        assert run(capsys, "apply", str(root), "--db", url, "--dry-run")[0] == 6
        config = tmp_path / "lupo.toml"
        config.write_text("out_of_order = true\n", encoding="utf-8")
        code, out, err = run(capsys, "apply", str(root), "--db", url, "--config", str(config))
        assert code == 0, err
        assert "1 of 1 step(s) applied" in out

    def test_a_newer_file_is_not_out_of_order(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """Adding V4 after V3 is the normal case: applied without a word."""
        url = f"sqlite:///{tmp_path}/x.db"
        root = write(tmp_path / "m", THREE)
        assert run(capsys, "apply", str(root), "--db", url)[0] == 0
        write(root, {"V4__d.sql": "CREATE TABLE t4 (id INTEGER PRIMARY KEY);\n"})
        code, out, err = run(capsys, "apply", str(root), "--db", url)
        assert code == 0, err
        assert "1 of 1 step(s) applied" in out


# ------------------------------------------------------------------------ duplicate versions


class TestDuplicateVersions:
    @pytest.mark.parametrize("command", ["check", "plan", "apply"])
    def test_two_files_of_one_version_are_refused_naming_both(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
    ) -> None:
        """V30__a.sql and V30__b.sql: refused by check, plan and apply, naming both files."""
        url = f"sqlite:///{tmp_path}/x.db"
        root = write(tmp_path / "m", {"V30__a.sql": "SELECT 1;\n", "V30__b.sql": "SELECT 2;\n"})
        args = [command, str(root)] + (["--db", url] if command == "apply" else [])
        code, out, err = run(capsys, *args)
        assert code == errors.MigrationFileError.exit_code
        text = out + err
        assert "version 30 is used by both V30__a.sql and V30__b.sql" in text
        assert not (tmp_path / "x.db").exists()

    def test_legacy_names_may_share_a_version(self, tmp_path: Path) -> None:
        """4_1_1_create and 4_1_1_seed (the corpus has such pairs): accepted, in id order."""
        steps = load_steps(
            write(tmp_path / "m", {"4_1_1_seed.sql": "SELECT 1;\n", "4_1_1_create.sql": "X;\n"})
        )
        assert {s.id: s.depends_on for s in steps} == {
            "4_1_1_create": (),
            "4_1_1_seed": ("4_1_1_create",),
        }


# ------------------------------------------------------------------------------ repeatables

VIEW = "DROP VIEW IF EXISTS v;\nCREATE VIEW v AS SELECT id FROM t1;\n"
VIEW_DOWN = "DROP VIEW v;\n"


class TestRepeatables:
    def test_repeatables_are_planned_after_every_versioned_file(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """R__views.sql sorts before V1 by name; it runs last, after the chain's end."""
        root = write(tmp_path / "m", {**THREE, "R__views.sql": VIEW})
        steps = plan_json(capsys, root)["steps"]
        assert isinstance(steps, list)
        assert [s["id"] for s in steps] == ["V1__a", "V2__b", "V3__c", "R__views"]
        assert steps[-1]["depends_on"] == ["V3__c"]

    def test_an_edited_repeatable_runs_again_and_is_recorded_anew(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """Unchanged: nothing to do. Edited: pending again, applied (not refused as edited),
        and recorded with the new checksum (verify finds nothing edited)."""
        url = f"sqlite:///{tmp_path}/x.db"
        root = write(
            tmp_path / "m", {**THREE, "R__views.sql": VIEW, "R__views.down.sql": VIEW_DOWN}
        )
        code, out, err = run(capsys, "apply", str(root), "--db", url)
        assert code == 0, err
        assert "4 of 4 step(s) applied" in out
        code, out, _ = run(capsys, "apply", str(root), "--db", url)
        assert code == 0
        assert "nothing to do" in out
        write(root, {"R__views.sql": VIEW.replace("SELECT id", "SELECT id, id AS twice")})
        code, out, err = run(capsys, "status", str(root), "--db", url)
        assert "pending  R__views" in out
        code, out, err = run(capsys, "apply", str(root), "--db", url)
        assert code == 0, err
        assert "1 of 1 step(s) applied" in out
        code, out, err = run(capsys, "verify", str(root), "--db", url)
        assert code == 0, out + err
        assert "0 edited" in out
        code, out, _ = run(capsys, "apply", str(root), "--db", url)
        assert code == 0
        assert "nothing to do" in out
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert list(conn.execute(sa.text("SELECT * FROM v")).keys()) == ["id", "twice"]
        engine.dispose()


# ---------------------------------------------------------------------------------- --target


class TestTargetLooksLikeAVersion:
    @pytest.mark.parametrize("value", ["5", "V5", "v4.1.2"])
    def test_a_version_for_target_is_refused_with_a_hint_to_upto(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str
    ) -> None:
        """--target names a ledger, not a version: refused before the database is opened."""
        root = write(tmp_path / "m", THREE)
        url = f"sqlite:///{tmp_path}/x.db"
        code, _, err = run(capsys, "apply", str(root), "--db", url, "--target", value)
        assert code == errors.InvalidArgumentError.exit_code
        assert f"--target {value} looks like a version" in err
        assert "ledger" in err
        assert "--upto" in err
        assert len(err.strip().splitlines()) == 1
        assert not (tmp_path / "x.db").exists()

    def test_a_ledger_named_so_is_set_in_the_environment(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The way round for a ledger really named 5; an ordinary name is never refused."""
        root = write(tmp_path / "m", THREE)
        url = f"sqlite:///{tmp_path}/x.db"
        monkeypatch.setenv("LUPO_MIGRATE_TARGET", "5")
        code, out, err = run(capsys, "apply", str(root), "--db", url)
        assert code == 0, err
        code, out, err = run(capsys, "status", str(root), "--db", url)
        assert "target 5: 3 applied" in out
        monkeypatch.delenv("LUPO_MIGRATE_TARGET")
        # on the command line it is refused, even where the quick path could answer
        assert entry.main(["apply", str(root), "--db", url, "--target", "5"]) == 2
        assert "looks like a version" in capsys.readouterr().err
        other = f"sqlite:///{tmp_path}/y.db"
        code, out, err = run(capsys, "apply", str(root), "--db", other, "--target", "staging")
        assert code == 0, err
        assert "3 of 3 step(s) applied" in out
