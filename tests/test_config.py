"""Settings: files, environment and flags, in that order of precedence; errors say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from lupo_migrate.errors import ConfigurationError
from lupo_migrate.session.config import hide_password, load_settings


class TestPrecedence:
    def test_pyproject_then_lupo_toml_then_environment_then_flags(self, tmp_path: Path) -> None:
        """Each later source wins; relative paths are relative to their file."""
        (tmp_path / "pyproject.toml").write_text(
            '[tool.lupo_migrate]\ndb = "sqlite:///a.db"\nmigrations = "m"\ntable_budget = 80\n'
        )
        (tmp_path / "lupo.toml").write_text("table_budget = 90\nlock_wait_timeout = 3\n")
        env = {"LUPO_MIGRATE_LOCK_WAIT": "4"}
        settings = load_settings(cwd=tmp_path, environ=env, target="prod")
        assert settings.db == f"sqlite:///{tmp_path / 'a.db'}"
        assert settings.migrations == tmp_path / "m"
        assert settings.table_budget == 90
        assert settings.lock_wait_timeout == 4
        assert settings.target == "prod"
        flagged = load_settings(cwd=tmp_path, environ=env, table_budget=200)
        assert flagged.table_budget == 200

    def test_no_files_gives_the_defaults(self, tmp_path: Path) -> None:
        """No table budget (off unless configured), lock wait 5 s, target 'default'."""
        settings = load_settings(cwd=tmp_path, environ={})
        assert (settings.table_budget, settings.lock_wait_timeout, settings.target) == (
            None,
            5,
            "default",
        )

    def test_federation_tables(self, tmp_path: Path) -> None:
        """schemas and renames are tables of names."""
        (tmp_path / "lupo.toml").write_text(
            '[schemas]\ncore = "app"\n[renames]\nlupopedia = "app"\n'
        )
        settings = load_settings(cwd=tmp_path, environ={})
        assert settings.schemas == {"core": "app"}
        assert settings.renames == {"lupopedia": "app"}


class TestErrors:
    def test_an_unknown_setting_is_named_with_the_known_ones(self, tmp_path: Path) -> None:
        """A typo is an error naming the file and the setting."""
        (tmp_path / "lupo.toml").write_text("tabel_budget = 9\n")
        with pytest.raises(
            ConfigurationError, match=r"lupo.toml: unknown setting\(s\) tabel_budget"
        ):
            load_settings(cwd=tmp_path, environ={})

    def test_a_bad_number_in_the_environment_names_the_variable(self, tmp_path: Path) -> None:
        """LUPO_MIGRATE_TABLE_BUDGET=lots is refused with its name."""
        with pytest.raises(ConfigurationError, match="LUPO_MIGRATE_TABLE_BUDGET"):
            load_settings(cwd=tmp_path, environ={"LUPO_MIGRATE_TABLE_BUDGET": "lots"})

    def test_statement_wait_is_seconds_from_any_source_and_never_negative(
        self, tmp_path: Path
    ) -> None:
        """recover's wait for a dead run's statement: 120 s unless set; a negative or
        non-numeric value is refused naming where it came from."""
        assert load_settings(cwd=tmp_path, environ={}).statement_wait == 120.0
        (tmp_path / "lupo.toml").write_text("statement_wait = 600\n")
        assert load_settings(cwd=tmp_path, environ={}).statement_wait == 600.0
        env = {"LUPO_MIGRATE_STATEMENT_WAIT": "1.5"}
        assert load_settings(cwd=tmp_path, environ=env).statement_wait == 1.5
        assert load_settings(cwd=tmp_path, environ=env, statement_wait=0).statement_wait == 0
        for bad in ("-1", "soon", "nan"):
            with pytest.raises(ConfigurationError, match=r"LUPO_MIGRATE_STATEMENT_WAIT.*0 or more"):
                load_settings(cwd=tmp_path, environ={"LUPO_MIGRATE_STATEMENT_WAIT": bad})

    def test_broken_toml_names_the_file(self, tmp_path: Path) -> None:
        """Invalid TOML is a ConfigurationError with the path."""
        (tmp_path / "lupo.toml").write_text("db = \n")
        with pytest.raises(ConfigurationError, match="not valid TOML"):
            load_settings(cwd=tmp_path, environ={})


class TestPasswords:
    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("mysql+pymysql://root:s3cret@h:3306/db", "mysql+pymysql://root:***@h:3306/db"),
            ("postgresql://u@h/db", "postgresql://u@h/db"),
            ("sqlite:///x.db", "sqlite:///x.db"),
            ("mysql://u:p@ss@h/db", "mysql://u:***@h/db"),
        ],
    )
    def test_passwords_are_masked(self, url: str, shown: str) -> None:
        """Only the password part is replaced."""
        assert hide_password(url) == shown
