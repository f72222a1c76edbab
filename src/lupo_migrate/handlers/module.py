"""The ``module`` handler: Python migration modules with ``up(ctx)`` and ``down(ctx)``.

A module migration is a ``.py`` file under the migrations root::

    MIGRATION = {"module": "billing", "depends_on": ["V3__accounts"]}

    def up(ctx):
        ctx.execute("CREATE TABLE ${core}.invoices (id INT PRIMARY KEY)")
        ctx.log.info("invoices created")

    def down(ctx):
        ctx.execute("DROP TABLE ${core}.invoices")

Its header is the module-level ``MIGRATION`` literal, read without running the file. Its id is
namespaced by the module it belongs to (``billing.0001_invoices`` for
``billing/0001_invoices.py``; the module is the header's ``module`` or else the file's
directory), and its dependencies may name steps of any module and any file type by their ids.

The file runs only when the step is applied or undone, in a namespace of its own. ``ctx``
gives:

- ``ctx.execute(sql)``: one statement, with ``${core}``-style placeholders and literal schema
  renames applied, journalled like a doctrine statement (intent, done): after a crash the
  journal tells which ran, and a resumed step skips them (so ``up`` must issue the same
  statements in the same order each time);
- ``ctx.connection``: the step's connection (what runs through it directly is not journalled,
  and its effects cannot be told from its text: such a step is compared with its pre-images
  only as far as its ``execute`` calls say what it touches);
- ``ctx.names`` (federation: logical schema to physical name), ``ctx.dialect``, ``ctx.step``,
  and ``ctx.log``, a logger named ``lupo_migrate.module.<module>``.

A module without ``down`` cannot be rolled back: it is reported before the run starts
(``no-rollback``), never discovered after.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable, Mapping
from typing import Any, final

import attrs

from lupo_migrate.core.errors import StepError
from lupo_migrate.core.model import DOWN_OFFSET, Step
from lupo_migrate.handlers._federation import render

__all__ = ["DOWN_OFFSET", "ModuleContext", "ModuleHandler", "ModuleInfo"]

#: Journal indexes of ``down``'s statements start here (``up``'s use 0, 1, 2...).


@attrs.frozen(kw_only=True)
class ModuleInfo:
    """What a module step defines, known before it runs (its text is parsed, not run).

    Attributes:
        has_up: it defines ``up``.
        invertible: it defines ``down``.
        down_source: ``module`` when it defines ``down``, else ``none``.
        reasons: why it cannot be rolled back (empty when it can).
    """

    has_up: bool
    invertible: bool
    down_source: str
    reasons: tuple[str, ...] = ()


@attrs.define
class ModuleContext:
    """What ``up(ctx)`` and ``down(ctx)`` get (see the module docstring)."""

    step: Step
    connection: Any
    names: Mapping[str, str]
    dialect: str
    log: logging.Logger
    _context: Any = attrs.field(repr=False)
    _renames: Mapping[str, str] = attrs.field(repr=False)
    _next: int = attrs.field(repr=False)

    def execute(self, sql: str) -> None:
        """Run one statement, journalled; one the journal records as done is skipped."""
        index, self._next = self._next, self._next + 1
        if index in self._context.done():
            return
        text = render(sql, names=self.names, renames=self._renames, dialect=self.dialect)
        self._context.execute(text, index=index)


@final
@attrs.frozen
class ModuleHandler:
    """Applies and undoes ``.py`` migration modules (type ``module``)."""

    file_type: str = "module"
    suffixes: tuple[str, ...] = (".py",)

    def inspect(
        self,
        step: Step,
        text: str,
        *,
        dialect: str,
        read_text: Callable[[str], str] | None = None,
    ) -> ModuleInfo:
        """Whether *step*'s module defines ``up`` and ``down`` (parsed, never run).

        Raises:
            StepError: the module does not parse.
        """
        del dialect, read_text  # the same for every database
        defined = _functions(step, text)
        has_down = "down" in defined
        return ModuleInfo(
            has_up="up" in defined,
            invertible=has_down,
            down_source="module" if has_down else "none",
            reasons=() if has_down else ("it defines no down(ctx)",),
        )

    def apply(self, step: Step, context: Any) -> None:
        """Run the module's ``up(ctx)``."""
        self._call(step, context, "up", first=0)

    def rollback(self, step: Step, context: Any) -> None:
        """Run the module's ``down(ctx)`` (refused when it has none)."""
        self._call(step, context, "down", first=DOWN_OFFSET)

    def can_rollback(self, step: Step) -> bool:
        """Known from the file's text only (see :meth:`inspect`); True here."""
        del step
        return True

    def _call(self, step: Step, context: Any, name: str, *, first: int) -> None:
        text = context.read_text(step.path)
        if name not in _functions(step, text):
            raise StepError(
                step.id,
                step.path,
                f"the module defines no {name}(ctx); add one"
                + (" (or roll it back by hand)" if name == "down" else ""),
            )
        namespace: dict[str, Any] = {
            "__name__": f"lupo_migrations.{step.id}",
            "__file__": step.path,
        }
        exec(compile(text, step.path, "exec"), namespace)  # the migration's own code
        ctx = ModuleContext(
            step=step,
            connection=context.connection,
            names=context.names,
            dialect=context.dialect,
            log=logging.getLogger(f"lupo_migrate.module.{step.module or 'default'}"),
            context=context,
            renames=context.renames,
            next=first,
        )
        try:
            namespace[name](ctx)
        except StepError:
            raise
        except Exception as error:  # the migration's own failure, with where it happened
            raise StepError(
                step.id, step.path, f"{name}(ctx) raised {type(error).__name__}: {error}"
            ) from error


def _functions(step: Step, text: str) -> set[str]:
    """The names of the module-level functions *text* defines."""
    try:
        tree = ast.parse(text, filename=step.path)
    except SyntaxError as error:
        raise StepError(
            step.id, step.path, f"line {error.lineno}: Python syntax error: {error.msg}"
        ) from None
    return {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
