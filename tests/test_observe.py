"""Observability: events and metrics of real runs, Prometheus text served during a run,
OpenTelemetry gauges, webhook alerts (delivered; slow or dead ones bounded by their timeout)."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from databases import fresh_database
from lupo_migrate import load_steps
from lupo_migrate.backends.memory import InMemoryStorage
from lupo_migrate.cli import _settings
from lupo_migrate.core.history_stats import (
    Counts,
    RunRecord,
    expected_seconds,
    history_stats,
    prometheus,
    snapshot,
)
from lupo_migrate.observe import Event, Metrics, serve_prometheus
from lupo_migrate.observe.alerts import Alert, CallableSink, WebhookSink
from lupo_migrate.session import session as _session
from test_runner import _parts as _parts  # the parts fixture
from test_runner import orchestrator, write

PROGRESS = re.compile(r'^lupo_migrate_progress_percent\{[^}]*run="(\w+)"[^}]*\} (\S+)$', re.M)


def migrations(root: Path, count: int, *, sleep: float = 0.0, fail_at: int | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        body = f"CREATE TABLE t{index} (id INT PRIMARY KEY);\n"
        if sleep:
            body += f"SELECT SLEEP({sleep});\n"
        if index == fail_at:
            body += "INSERT INTO no_such_table VALUES (1);\n"
        (root / f"V{index + 1}__t{index}.sql").write_text(body)
    return root


def session(root: Path, url: str) -> Any:
    settings = _settings(
        directory=root, db=url, target_name=None, manifest=None, config=None, renames=()
    )
    return _session.session(settings)


def test_metrics_follow_a_run_from_0_to_100_percent(tmp_path: Path) -> None:
    events: list[Event] = []
    metrics = Metrics()
    root = migrations(tmp_path / "m", 4)
    with session(root, f"sqlite:///{tmp_path / 'x.db'}") as opened:
        opened.orchestrator.observers = [events.append, metrics]
        result = opened.apply()
    assert result.run is not None
    names = [e.name for e in events]
    assert names[0] == "run.started"
    assert names[-1] == "run.ended"
    assert names.count("statement") == 4
    assert names.count("validation") == 2
    progress = [e.data["steps_done"] for e in events if e.name == "run.transition"]
    assert progress == sorted(progress)
    assert progress[-1] == 4
    shot = metrics.snapshot()
    assert shot is not None
    assert (shot.progress_percent, shot.steps_done, shot.steps_total) == (100.0, 4, 4)
    assert shot.outcome == "completed"
    assert shot.validation_success_rate == 1.0
    assert shot.statements == 4
    assert shot.database_seconds > 0
    assert shot.files_per_minute > 0
    assert shot.memory_peak_bytes > 10_000_000
    assert shot.errors_by_type == {}


def test_a_failed_run_counts_its_error_by_type_and_an_observer_that_raises_is_left_out(
    tmp_path: Path,
) -> None:
    calls: list[str] = []

    def broken(event: Event) -> None:
        calls.append(event.name)
        raise RuntimeError("observer bug")

    metrics = Metrics()
    root = migrations(tmp_path / "m", 3, fail_at=1)
    with session(root, f"sqlite:///{tmp_path / 'x.db'}") as opened:
        opened.orchestrator.observers = [broken, metrics]
        result = opened.apply()
    assert result.run is not None
    assert result.run.outcome is not None
    assert result.run.outcome.value == "rolled_back"
    assert calls == ["run.started"]  # called once, then left out; the run went on
    shot = metrics.snapshot()
    assert shot is not None
    assert shot.errors_by_type == {"step_failed_partway": 1}
    assert shot.outcome == "rolled_back"
    assert shot.progress_percent == 100.0


@pytest.mark.mariadb
def test_prometheus_text_read_during_a_run_shows_progress_rising_to_100(tmp_path: Path) -> None:
    metrics = Metrics()
    root = migrations(tmp_path / "m", 6, sleep=0.25)
    seen: list[float] = []
    with (
        fresh_database("mariadb", tmp_path) as url,
        session(root, url) as opened,
        serve_prometheus(metrics) as port,
    ):
        opened.orchestrator.observers = [metrics]
        runner = threading.Thread(target=opened.apply)
        runner.start()
        while runner.is_alive() or not seen or seen[-1] < 100:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                text = answer.read().decode()
                assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            seen += [float(v) for _, v in PROGRESS.findall(text)]
            if not runner.is_alive() and seen and seen[-1] == 100:
                break
            time.sleep(0.05)
        runner.join()
    assert seen == sorted(seen), seen
    assert seen[-1] == 100.0
    assert any(0 < v < 100 for v in seen), seen  # read while the run worked
    assert "# TYPE lupo_migrate_database_seconds gauge" in text


def test_opentelemetry_gauges_carry_the_run_figures(tmp_path: Path) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    metrics = Metrics()
    metrics.bind_opentelemetry(MeterProvider(metric_readers=[reader]))
    root = migrations(tmp_path / "m", 2)
    with session(root, f"sqlite:///{tmp_path / 'x.db'}") as opened:
        opened.orchestrator.observers = [metrics]
        opened.apply()
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        m.name: m.data.data_points[0].value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert points["lupo_migrate.progress_percent"] == 100.0
    assert points["lupo_migrate.validation_success_rate"] == 1.0
    assert points["lupo_migrate.database_seconds"] > 0


# ----------------------------------------------------------------------------------- alerts


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    delay = 0.0

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        time.sleep(type(self).delay)
        body["_authorization"] = self.headers.get("Authorization")
        type(self).received.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "delay": 0.0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_alerts_reach_a_local_server(
    tmp_path: Path, webhook: tuple[str, type[_Hook]]
) -> None:
    url, hook = webhook
    sink = WebhookSink(url, timeout=5)
    collected: list[Alert] = []
    root = migrations(tmp_path / "m", 3, fail_at=2)
    with session(root, f"sqlite:///{tmp_path / 'x.db'}") as opened:
        opened.orchestrator.alert_sinks = [sink, CallableSink(collected.append)]
        result = opened.apply()
    assert result.run is not None
    levels = [a["level"] for a in hook.received]
    assert "critical" in levels, hook.received  # class A: the run was rolled back
    critical = next(a for a in hook.received if a["level"] == "critical")
    assert critical["run"] == result.run.id
    assert "class A rollback" in critical["message"]
    assert critical["source"] == "lupo_migrate"
    assert [a.message for a in collected] == [a["message"] for a in hook.received]
    assert all(a.id is not None for a in collected)  # recorded in migration_alerts too


def _dead_server() -> tuple[socket.socket, str]:
    """A socket that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}/hook"


def test_a_dead_or_slow_webhook_holds_the_run_up_no_longer_than_its_timeout(
    tmp_path: Path, webhook: tuple[str, type[_Hook]]
) -> None:
    url, hook = webhook
    hook.delay = 30.0  # slow: answers after 30 s
    listener, dead = _dead_server()
    try:
        for target in (url, dead):
            sink = WebhookSink(target, timeout=1.0, retries=5)
            root = migrations(tmp_path / f"m{len(target)}", 2, fail_at=1)
            db = f"sqlite:///{tmp_path / f'{len(target)}.db'}"
            with session(root, db) as opened:
                opened.orchestrator.alert_sinks = [sink]
                began = time.monotonic()
                opened.apply()
                took = time.monotonic() - began
            assert took < 1.0 + 2.5, (target, took)  # the run's own work is well under 2.5 s
            assert sink.failed, target  # given up, logged, not raised
    finally:
        listener.close()


# --------------------------------------------------------------------------------- figures


def test_snapshot_and_prometheus_text() -> None:
    counts = Counts(
        run_id="r1",
        target='a"b',
        phase="migrating",
        steps_total=4,
        steps_done=1,
        elapsed=30.0,
        validations=2,
        validations_passed=1,
        errors={"lint": 2},
    )
    shot = snapshot(counts)
    assert (shot.progress_percent, shot.files_per_minute, shot.eta_seconds) == (25.0, 2.0, 90.0)
    assert shot.validation_success_rate == 0.5
    text = prometheus([shot])
    assert 'lupo_migrate_progress_percent{target="a\\"b",run="r1",phase="migrating"} 25.0' in text
    assert 'lupo_migrate_errors_total{target="a\\"b",run="r1",type="lint"} 2' in text
    assert (
        snapshot(Counts(run_id="r", target="t", phase="idle", outcome="completed")).progress_percent
        == 100.0
    )


def test_history_stats_and_expected_duration() -> None:
    records = [
        RunRecord(run_id="a", outcome="completed", started=0, ended=10, steps=10),
        RunRecord(
            run_id="b",
            outcome="rolled_back",
            started=20,
            ended=40,
            steps=10,
            failure_kind="step_failed_partway",
            failed_file_type="doctrine",
        ),
        RunRecord(run_id="c", outcome="completed", started=50, ended=70, steps=10),
        RunRecord(run_id="d", outcome="completed", started=80, ended=110, steps=10),
        RunRecord(
            run_id="e",
            outcome="rolled_back",
            started=120,
            ended=125,
            steps=3,
            failure_kind="operator_abort",
            operator_rollback=True,
        ),
    ]
    stats = history_stats(records)
    assert stats.runs == 5
    assert stats.by_outcome == {"completed": 3, "rolled_back": 2}
    assert stats.rollback_frequency == 0.25  # 1 of the 4 runs that applied
    assert stats.operator_rollbacks == 1
    assert stats.median_seconds == 20
    assert stats.trend_seconds_per_run is not None
    assert stats.failures_by_type == {"step_failed_partway": 1, "operator_abort": 1}
    assert stats.failures_by_file_type == {"doctrine": 1}
    assert expected_seconds(records, 20) == (2.0 * 20 * 1.5, 3)
    assert expected_seconds(records[:2], 20) is None


def test_the_checklist_of_a_completed_and_of_a_rolled_back_run(tmp_path: Path) -> None:
    root = migrations(tmp_path / "m", 2)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with session(root, url) as opened:
        done = opened.apply().run
        assert done is not None
        items = {i.label: i for i in opened.orchestrator.checklist(done.id[:8])}
    assert len(items) == 15
    assert [i.stage for i in items.values()] == ["pre"] * 5 + ["during"] * 5 + ["post"] * 5
    states = {label: item.state for label, item in items.items()}
    assert states["System backup completed"] == "done"
    assert states["Migration plan reviewed"] == "manual"
    assert states["Rollback plan tested"] == "done"
    assert states["System freeze active"] == "done"
    assert states["Progress monitoring active"] == "done"
    assert items["Progress monitoring active"].evidence.startswith("2 statement(s)")
    assert states["System thaw completed"] == "done"
    assert states["Validation passed"] == "done"
    assert states["Performance verified"] == "skipped"
    assert states["Monitoring baseline established"] == "done"
    assert items["Validation passed"].mark == "[x]"

    failing = migrations(tmp_path / "f", 3, fail_at=2)
    with session(failing, f"sqlite:///{tmp_path / 'y.db'}") as opened:
        rolled = opened.apply().run
        assert rolled is not None
        states = {i.label: i.state for i in opened.orchestrator.checklist(rolled.id)}
    assert states["System thaw completed"] == "done"
    assert states["Validation passed"] == "skipped"  # rolled back before post-validation
    assert states["Monitoring baseline established"] == "skipped"
    assert states["Stakeholders notified"] == "done"  # the class A alert


def test_progress_prints_milestones_on_a_pipe_and_one_line_on_a_terminal(tmp_path: Path) -> None:
    import io

    from lupo_migrate.observe.progress import Progress

    plain, live = io.StringIO(), io.StringIO()
    root = migrations(tmp_path / "m", 3)
    with session(root, f"sqlite:///{tmp_path / 'x.db'}") as opened:
        opened.orchestrator.observers = [Progress(plain, live=False), Progress(live, live=True)]
        run = opened.apply().run
    assert run is not None
    lines = plain.getvalue().splitlines()
    assert lines[0] == f"run {run.id[:12]}: 3 step(s)"
    assert "[1/3] V1__t0 applied" in lines
    assert "[3/3] V3__t2 applied" in lines
    assert lines.index("phase: migrating") < lines.index("[1/3] V1__t0 applied")
    drawn = live.getvalue()
    assert "\n" not in drawn  # one line, rewritten in place
    assert "migrating" in drawn
    assert "3/3" in drawn
    assert drawn.endswith("\r")  # cleared at the end


class TestEscalation:
    """A run slower than its history says raises one critical alert (injected clock)."""

    def _run(self, parts: dict[str, Any], name: str, seconds: float, sinks: list[Any]) -> Any:
        clock = parts["clock"]
        parts["target"].on_execute = lambda _statement: clock.advance(timedelta(seconds=seconds))
        write(
            parts["root"],
            {f"{name}_1.sql": f"CREATE {name}1\n", f"{name}_2.sql": f"CREATE {name}2\n"},
        )
        orch = orchestrator(parts, alert_sinks=sinks)
        return orch.apply(load_steps(parts["root"])).run

    def test_a_run_slower_than_its_history_escalates_once(self, parts: dict[str, Any]) -> None:
        parts["storage"] = InMemoryStorage(clock=parts["clock"])
        alerts: list[Alert] = []
        for name in ("V1", "V2", "V3"):  # 10 s a step, three times
            self._run(parts, name, 10, [CallableSink(alerts.append)])
        assert not [a for a in alerts if a.level == "critical"]
        self._run(parts, "V4", 12, [CallableSink(alerts.append)])  # within 1.5x: quiet
        assert not [a for a in alerts if a.level == "critical"]
        run = self._run(parts, "V5", 60, [CallableSink(alerts.append)])  # 60 s a step
        critical = [a for a in alerts if a.level == "critical"]
        assert len(critical) == 1, critical
        assert critical[0].run_id == run.id
        assert "has taken 0:01:00, longer than the 0:00:30 expected for 2 step(s)" in (
            critical[0].message
        )
        assert "(from 4 earlier run(s))" in critical[0].message
        assert orchestrator(parts).stats().median_seconds is not None

    def test_no_escalation_without_enough_history(self, parts: dict[str, Any]) -> None:
        parts["storage"] = InMemoryStorage(clock=parts["clock"])
        alerts: list[Alert] = []
        self._run(parts, "V1", 10, [])
        self._run(parts, "V2", 600, [CallableSink(alerts.append)])
        assert not [a for a in alerts if a.level == "critical"]

    def test_a_long_statement_escalates_while_it_runs(self, parts: dict[str, Any]) -> None:
        """No transition happens during one long statement: the keep-alive thread checks."""
        parts["storage"] = InMemoryStorage(clock=parts["clock"])
        for name in ("V1", "V2", "V3"):
            self._run(parts, name, 10, [])
        alerts: list[Alert] = []
        seen_during: list[int] = []
        clock = parts["clock"]

        def long_statement(_statement: str) -> None:
            clock.advance(timedelta(seconds=600))
            deadline = time.monotonic() + 10
            while not alerts and time.monotonic() < deadline:
                time.sleep(0.05)  # the keep-alive thread looks every second
            seen_during.append(len(alerts))

        files = {"V9_1.sql": "CREATE x\n", "V9_2.sql": "CREATE y\n"}
        write(parts["root"], files)
        parts["target"].on_execute = long_statement
        orchestrator(parts, alert_sinks=[CallableSink(alerts.append)]).apply(
            load_steps(parts["root"])
        )
        assert seen_during[0] == 1  # raised while the first statement still ran
        assert [a.level for a in alerts].count("critical") == 1


def test_history_stats_show_and_alerts_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_apply import cli

    root = migrations(tmp_path / "m", 3, fail_at=2)
    args = [str(root), "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    assert cli(capsys, "apply", *args)[0] == 11  # rolled back: a critical alert
    (root / "V3__t2.sql").write_text("CREATE TABLE t2 (id INT PRIMARY KEY);\n")
    assert cli(capsys, "apply", *args)[0] == 0
    code, out, err = cli(capsys, "history", *args, "--stats")
    assert code == 0, err
    assert "runs: 2" in out
    assert "  completed    1" in out
    assert "  rolled_back  1" in out
    assert "rollback frequency: 50% of the runs that applied" in out
    assert "  step_failed_partway      1" in out
    assert "failures by file type:\n  doctrine                 1" in out
    first = cli(capsys, "history", *args)[1].split()[0]
    code, out, err = cli(capsys, "show", first[:10], *args)
    assert code == 0, err
    assert "rolled_back, 0/3 step(s) applied" in out
    assert "post-migration:" in out
    assert "[x] System thaw completed" in out
    code, out, err = cli(capsys, "alerts", *args)
    assert code == 0, err
    critical = next(line for line in out.splitlines() if "critical" in line)
    alert_id = critical.split()[0]
    assert "open" in critical
    assert cli(capsys, "alerts", *args, "--ack", alert_id)[1] == f"alert {alert_id} acknowledged\n"
    assert "acknowledged" in next(
        line for line in cli(capsys, "alerts", *args)[1].splitlines() if line.split()[0] == alert_id
    )
    assert cli(capsys, "alerts", *args, "--resolve", alert_id)[0] == 0
    listed = cli(capsys, "alerts", *args)[1]
    assert not [line for line in listed.splitlines() if line.split()[0] == alert_id]
    code, _, err = cli(capsys, "alerts", *args, "--ack", "999")
    assert code != 0
    assert "no alert 999" in err


def test_the_library_prints_nothing_even_when_a_run_fails(tmp_path: Path) -> None:
    """A host that configured no logging sees nothing on stdout or stderr: the library logs
    through a NullHandler-backed logger and leaves printing to the command line."""
    import subprocess
    import sys

    root = migrations(tmp_path / "m", 2, fail_at=1)
    script = f"""
from lupo_migrate.session import session as _session
from lupo_migrate.cli import _settings
settings = _settings(directory={str(root)!r}, db="sqlite:///{tmp_path / "x.db"}",
                     target_name=None, manifest=None, config=None, renames=())
with _session.session(settings) as opened:
    run = opened.apply().run
assert run.outcome.value == "rolled_back"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "migrations"


def test_a_webhook_set_in_lupo_toml_gets_the_command_lines_alerts(
    tmp_path: Path, webhook: tuple[str, type[_Hook]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19, 11: the webhook sink from lupo.toml (levels too), the Authorization header
    from the environment, without any Python."""
    from lupo_migrate.cli import main

    url, hook = webhook
    (tmp_path / "lupo.toml").write_text(f'webhook = "{url}"\nwebhook_levels = ["info"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LUPO_MIGRATE_WEBHOOK_AUTHORIZATION", "Bearer s3cret")
    assert main(["apply", str(QUICKSTART), "--db", f"sqlite:///{tmp_path / 'a.db'}"]) == 0
    (sent,) = hook.received
    assert (sent["level"], sent["_authorization"]) == ("info", "Bearer s3cret")
    assert sent["message"].endswith("4 step(s) applied")


def test_a_webhook_from_the_environment_sends_only_the_levels_asked(
    tmp_path: Path, webhook: tuple[str, type[_Hook]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lupo_migrate.cli import main

    url, hook = webhook
    monkeypatch.setenv("LUPO_MIGRATE_WEBHOOK", url)
    monkeypatch.setenv("LUPO_MIGRATE_WEBHOOK_LEVELS", "critical,warning")
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__t.sql").write_text("CREATE TABLE t (id INTEGER);\n")
    (migrations / "V2__bad.sql").write_text("SELECT no_such_function();\n")
    assert main(["apply", str(migrations), "--db", f"sqlite:///{tmp_path / 'a.db'}"]) == 11
    assert [a["level"] for a in hook.received] == ["critical"]  # the class A rollback


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ('webhook = "hooks.example/x"', "webhook must be an http:// or https:// URL"),
        ('webhook_levels = ["loud"]', "webhook_levels must name some of critical, warning, info"),
    ],
)
def test_a_bad_webhook_setting_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setting: str,
    said: str,
) -> None:
    from lupo_migrate.cli import main

    (tmp_path / "lupo.toml").write_text(setting + "\n")
    monkeypatch.chdir(tmp_path)
    assert main(["apply", str(QUICKSTART), "--db", f"sqlite:///{tmp_path / 'a.db'}"]) == 12
    assert said in capsys.readouterr().err
