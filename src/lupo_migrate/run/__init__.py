"""The imperative shell around the state machine: the ``Orchestrator`` and its parts.

The arrows run one way, from the commands down to what a step needs:

- :mod:`~lupo_migrate.run.orchestrator`: the ``Orchestrator``, its public commands;
- :mod:`~lupo_migrate.run.operations` (rollback, accept, purge, resolve),
  :mod:`~lupo_migrate.run.downgrade`, :mod:`~lupo_migrate.run.queue` (draining the run queue);
- :mod:`~lupo_migrate.run.launch` (starting a run, guarded against a lost connection) and
  :mod:`~lupo_migrate.run.recover` (carrying on or rolling back a run that died);
- :mod:`~lupo_migrate.run.drive` (feeding events to the machine, carrying out its effects);
- :mod:`~lupo_migrate.run.checks` (validation before and after, drift),
  :mod:`~lupo_migrate.run.decisions` (recording decision windows and rollback material);
- :mod:`~lupo_migrate.run.undo` (undoing a step, pre-images) and
  :mod:`~lupo_migrate.run.step` (applying one step);
- :mod:`~lupo_migrate.run.facts` (what the plan's statements touch, per step),
  :mod:`~lupo_migrate.run.observers`, :mod:`~lupo_migrate.run.context` (what a handler
  gets: the ``StepContext``, where statements are journalled), :mod:`~lupo_migrate.run.keepalive`;
- :mod:`~lupo_migrate.run.wiring` (the collaborators and the state of the run being driven)
  and :mod:`~lupo_migrate.run.shared` (values every part uses).

May import: :mod:`lupo_migrate.observe`, :mod:`lupo_migrate.handlers`,
:mod:`lupo_migrate.files`, :mod:`lupo_migrate.core`; never a backend (statements reach the
database through the ``Target`` protocol).
"""
