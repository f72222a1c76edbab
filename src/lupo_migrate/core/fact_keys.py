"""The fact keys: the names under which the shell files what it measured (fingerprints, rows of
untouched tables, the plan's declared effects, row estimates, probe times...) in a
``ValidationContext``'s facts, for the validators to compare.

They are the contract between the shell that measures (``run.checks``, ``run.facts``) and the
validators that read them (``core.validation``, ``core.schema_checks``); kept apart so that both
validator modules share them without importing each other. ``core.validation`` re-exports every
key. Only constants.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "APART",
    "BEFORE",
    "DATA_AFTER",
    "DATA_BEFORE",
    "DOWN_STATEMENTS",
    "EFFECTS",
    "ESTIMATES",
    "EXPLICIT_DOWN",
    "FINGERPRINT",
    "NEEDS",
    "NO_ROLLBACK",
    "PROBES_AFTER",
    "PROBES_BEFORE",
    "RECORDED",
    "SOFT_DROP",
    "UNKNOWN",
    "UNSPLIT",
]

# The shell measures; the validators compare. The facts they read:

#: The live schema fingerprint at this stage (PRE: before the run; POST: after it).
FINGERPRINT: Final = "fingerprint"
#: PRE: the fingerprint the last run left (None on the first run).
RECORDED: Final = "recorded_fingerprint"
#: POST: the fingerprint read before the run.
BEFORE: Final = "fingerprint_before"
#: What the plan's statements declare, in order: (step id, kind, name, action, new name);
#: kinds ``table``, ``view``, ``trigger``...; actions ``create``, ``alter``, ``drop``,
#: ``rename``, ``write``.
EFFECTS: Final = "effects"
#: What a rollback must keep of each table a statement changes, in order: (step id, table,
#: ``shape``/``columns``/``drop``/``rows``, dropped columns) (see ``sql.needs``).
NEEDS: Final = "needs"
#: Whether the target sets a dropped table aside instead of copying it (a soft drop).
SOFT_DROP: Final = "soft_drop"
#: Statements whose effects cannot be told from their text: (step id, first word).
UNKNOWN: Final = "unknown_effects"
#: Row counts and checksums (``TableData``) of the tables the plan does not touch.
DATA_BEFORE: Final = "data_before"
DATA_AFTER: Final = "data_after"
#: About how many rows each table holds (the catalog's estimate).
ESTIMATES: Final = "row_estimates"
#: Steps with a down section of their own (or a down twin): they need no backups.
EXPLICIT_DOWN: Final = "explicit_down"
#: The statements of the down sections files hold: (step id, path, line, text).
DOWN_STATEMENTS: Final = "down_statements"
#: Steps whose statements run apart, each committing on its own (PostgreSQL statements that
#: cannot run in a transaction, see ``sql.apart``): step ids.
APART: Final = "apart"
#: Steps whose handler lists statements but listed none, or could not split the file: their
#: file is checked again (an empty file, an unterminated quote) before anything runs.
UNSPLIT: Final = "unsplit"
#: Steps whose rollback cannot be guaranteed, with why: (step id, reason).
NO_ROLLBACK: Final = "no_rollback"
#: Seconds each declared performance probe took (None: it failed).
PROBES_BEFORE: Final = "probes_before"
PROBES_AFTER: Final = "probes_after"
