"""The dashboard: its JSON state on SQLite, the HTTP surface (GET only, 127.0.0.1 only), the
command, and the acceptance test: headless Chromium watching a real run on MariaDB."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import attrs
import pytest

from conftest import CORPUS, needs_corpus
from databases import fresh_database
from lupo_migrate.backends.memory import ManualClock
from lupo_migrate.cli import _settings
from lupo_migrate.core.clock import from_stamp, to_stamp
from lupo_migrate.core.model import Phase, Run
from lupo_migrate.dashboard import Dashboard, Mark, estimate, observe_phase
from lupo_migrate.errors import ConfigurationError
from lupo_migrate.session import session as _session

ROOT = Path(__file__).resolve().parents[1]
VERSION = "file.last_modified_system_version"
SET_VERSION = f"""---
id: docs_4_1_0
files: "docs/*.md"
set:
  {VERSION}: 4.1.0
---
Every document was last modified by 4.1.0.
"""
_T = TypeVar("_T")


def sql_files(root: Path, count: int, *, sleep: float = 0.0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        body = f"CREATE TABLE t{index} (id INT PRIMARY KEY);\n"
        if sleep:
            body += f"SELECT SLEEP({sleep});\n"
        (root / f"V{index + 1}__t{index}.sql").write_text(body)
    return root


def docs_project(tmp_path: Path, *, sql: int = 1, sleep: float = 0.0) -> Path:
    """tmp_path/p: migrations/ (*sql* SQL files, then a documentation step taking the docs'
    version back to 4.1.0: a class D finding) and docs/ (one small document)."""
    root = tmp_path / "p"
    migrations = sql_files(root / "migrations", sql, sleep=sleep)
    (migrations / f"V{sql + 1}__docs.md").write_text(SET_VERSION)
    (root / "docs").mkdir()
    (root / "docs" / "a.md").write_text(f"---\n{VERSION}: 4.1.6\n---\n# A\n\nText.\n")
    return migrations


def session(migrations: Path, url: str) -> Any:
    settings = _settings(
        directory=migrations, db=url, target_name=None, manifest=None, config=None, renames=()
    )
    return _session.session(settings)


def until(what: Callable[[], _T | None], *, timeout: float, every: float = 0.1) -> _T:
    """Poll *what* until it answers something truthy; fail after *timeout* seconds."""
    end = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"still waiting after {timeout} s: {what}")
        time.sleep(every)


def get(url: str, path: str = "/", *, method: str = "GET", host: str | None = None) -> Any:
    """(status, headers, body) of one request, without following anything."""
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        connection.close()


# ------------------------------------------------------------------ the state


class TestState:
    def test_a_completed_run_shows_phase_steps_checklist_history_and_its_rollback_window(
        self, tmp_path: Path
    ) -> None:
        """A completed run reads as idle/completed with its steps, checklist and history."""
        with session(sql_files(tmp_path / "m", 3), f"sqlite:///{tmp_path / 'x.db'}") as opened:
            result = opened.apply()
            assert result.run is not None
            state = Dashboard(opened.orchestrator).refresh()
        run = state["run"]
        assert (run["id"], run["phase"], run["outcome"]) == (result.run.id, "idle", "completed")
        assert (run["steps_done"], run["steps_total"], run["in_flight"]) == (3, 3, None)
        assert run["eta_seconds"] is None  # ended
        assert state["timeline"][-1]["phase"] == "idle"
        assert state["timeline"][-1]["outcome"] == "completed"
        checklist = state["checklist"]
        assert checklist["run_id"] == result.run.id
        assert len(checklist["items"]) == 15
        assert {i["stage"] for i in checklist["items"]} == {"pre", "during", "post"}
        assert any(
            i["label"] == "Validation passed" and i["state"] == "done" for i in checklist["items"]
        )
        history = state["history"]
        assert history["by_outcome"] == {"completed": 1}
        assert history["rollback_frequency"] == 0.0
        assert (state["lock"], state["freeze"], state["queue"], state["errors"]) == (
            None,
            None,
            [],
            [],
        )
        (window,) = state["decisions"]  # the completed run may be rolled back for 24 h
        assert (window["class"], window["status"], window["run_id"]) == (
            "run",
            "available",
            result.run.id,
        )
        assert 24 * 3600 - 120 < window["seconds_left"] <= 24 * 3600
        json.dumps(state)  # JSON-able as it is

    def test_a_pending_d_decision_shows_the_seconds_left_in_its_window(
        self, tmp_path: Path
    ) -> None:
        """A class D decision counts down its 30-day window by the clock; closed, it goes."""
        with session(docs_project(tmp_path), f"sqlite:///{tmp_path / 'x.db'}") as opened:
            result = opened.apply()
            assert result.run is not None
            assert [c.value for c in result.run.pending] == ["D"]
            (record,) = [d for d in opened.orchestrator.decisions() if d.label == "D"]
            assert record.deadline is not None
            clock = ManualClock(from_stamp(record.recorded_at) + timedelta(days=1, seconds=5))
            board = Dashboard(opened.orchestrator, clock=clock)
            state = board.refresh()
            (shown,) = [d for d in state["decisions"] if d["class"] == "D"]
            assert shown["status"] == "pending"
            assert shown["scope"] == ["docs_4_1_0"]
            assert shown["seconds_left"] == 29 * 86400 - 5
            assert shown["deadline"] == from_stamp(record.deadline).timestamp()
            clock.advance(timedelta(days=29, seconds=10))  # the window has closed
            assert [d["class"] for d in board.refresh()["decisions"]] == []

    def test_phase_changes_seen_while_polling_make_the_timeline(self, tmp_path: Path) -> None:
        """The storage keeps one phase; the dashboard keeps the changes it saw, in order."""
        with session(sql_files(tmp_path / "m", 1), f"sqlite:///{tmp_path / 'x.db'}") as opened:
            storage = opened.orchestrator.storage
            clock = ManualClock()
            board = Dashboard(opened.orchestrator, clock=clock)
            assert board.refresh()["run"] is None
            run = Run(id="r1", target=opened.target, steps=("a", "b", "c", "d"))
            storage.create_run(run)
            seen = []
            for phase, applied, in_flight in [
                (Phase.PREPARING, (), None),
                (Phase.MIGRATING, ("a",), "b"),
                (Phase.MIGRATING, ("a", "b"), "c"),  # same phase: no new mark
                (Phase.VALIDATING_POST, ("a", "b", "c", "d"), None),
            ]:
                new = attrs.evolve(
                    run, phase=phase, applied=applied, in_flight=in_flight, version=run.version + 1
                )
                storage.save_run(new, expected_version=run.version)
                run = new
                clock.advance(timedelta(seconds=2))
                seen.append(board.refresh())
        during = seen[1]["run"]
        assert (during["phase"], during["in_flight"], during["steps_done"]) == ("migrating", "b", 1)
        phases = [m["phase"] for m in seen[-1]["timeline"] if m["observed"]]
        assert phases == ["preparing", "migrating", "validating_post"]
        times = [m["at"] for m in seen[-1]["timeline"] if m["observed"]]
        assert times == sorted(times)

    def test_durations_and_the_eta_come_from_the_times_the_storage_keeps(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the storage's run times: the durations chart, and an ETA from the history."""
        migrations = tmp_path / "m"
        with session(sql_files(migrations, 1), f"sqlite:///{tmp_path / 'x.db'}") as opened:
            opened.apply()
        for count in (2, 3):  # one more file each time: three completed runs of one step
            with session(sql_files(migrations, count), f"sqlite:///{tmp_path / 'x.db'}") as opened:
                opened.apply()
        with session(migrations, f"sqlite:///{tmp_path / 'x.db'}") as opened:
            clock = ManualClock(datetime(2025, 3, 1, 12, 0, tzinfo=UTC))
            start = clock.now() - timedelta(hours=1)
            ids = [r.id for r in opened.history()]
            times = {
                run_id: (
                    to_stamp(start + timedelta(minutes=i)),
                    to_stamp(start + timedelta(minutes=i, seconds=10 + i)),
                )
                for i, run_id in enumerate(ids)
            }
            board = Dashboard(opened.orchestrator, clock=clock)
            monkeypatch.setattr(
                opened.orchestrator.storage, "run_times", lambda _target: times, raising=False
            )
            history = board.refresh()["history"]
            assert [(d["run_id"], d["seconds"]) for d in history["durations"]] == [
                (ids[0], 10.0),
                (ids[1], 11.0),
                (ids[2], 12.0),
            ]
            assert (history["median_seconds"], history["durations_recorded"]) == (11.0, True)
            working = Run(id="r4", target=opened.target, phase=Phase.MIGRATING, steps=("a", "b"))
            opened.orchestrator.storage.create_run(working)
            times["r4"] = (to_stamp(clock.now() - timedelta(seconds=5)), None)
            run = board.refresh()["run"]
        # A usual run takes 11 s a step (the median): 22 s for two, 5 s gone.
        assert (run["eta_seconds"], run["eta_basis"]) == (17.0, "history of 3 run(s)")
        assert run["elapsed_seconds"] == 5.0

    def test_a_database_hiccup_shows_as_an_error_and_the_next_poll_recovers(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failing read names its section; the last good value stays; it clears itself."""
        with session(sql_files(tmp_path / "m", 2), f"sqlite:///{tmp_path / 'x.db'}") as opened:
            opened.apply()
            board = Dashboard(opened.orchestrator)
            good = board.refresh()
            storage = opened.orchestrator.storage

            def gone(*_args: Any) -> Any:
                raise ConnectionError("MySQL server has gone away (2006)")

            monkeypatch.setattr(storage, "latest_run", gone)
            broken = board.refresh()
            assert broken["errors"] == ["latest run: MySQL server has gone away (2006)"]
            assert broken["run"]["id"] == good["run"]["id"]  # the last value read
            monkeypatch.undo()
            assert board.refresh()["errors"] == []

    def test_queued_entries_are_listed_in_the_order_they_will_run(self, tmp_path: Path) -> None:
        with session(sql_files(tmp_path / "m", 2), f"sqlite:///{tmp_path / 'x.db'}") as opened:
            low = opened.enqueue(priority=1, by="ada")
            high = opened.enqueue(priority=9, by="bob")
            queue = Dashboard(opened.orchestrator).refresh()["queue"]
        assert [(e["id"], e["priority"], e["status"]) for e in queue] == [
            (high.id, 9, "queued"),
            (low.id, 1, "queued"),
        ]
        assert (queue[0]["enqueued_by"], queue[0]["steps"]) == ("bob", 2)


class TestPure:
    def test_a_phase_already_shown_adds_no_mark(self) -> None:
        marks = observe_phase((), "migrating", 1.0)
        assert observe_phase(marks, "migrating", 2.0) is marks
        assert observe_phase(marks, "idle", 3.0, outcome="completed")[-1] == Mark(
            "idle", 3.0, True, "completed"
        )

    def test_the_eta_comes_from_history_else_from_the_run_s_pace(self) -> None:
        assert estimate(done=1, total=4, elapsed=10, expected=60, basis=3) == (
            50,
            "history of 3 run(s)",
        )
        assert estimate(done=1, total=4, elapsed=10, expected=5, basis=3)[0] == 0
        assert estimate(done=1, total=4, elapsed=10, expected=None) == (30, "this run's pace")
        assert estimate(done=0, total=4, elapsed=10, expected=None) == (None, None)


# ------------------------------------------------------------------ the server


@pytest.fixture(name="served")
def _served(tmp_path: Path) -> Iterator[str]:
    with (
        session(sql_files(tmp_path / "m", 1), f"sqlite:///{tmp_path / 'x.db'}") as opened,
        Dashboard(opened.orchestrator, poll=0.05).serve(port=0) as url,
    ):
        yield url


class TestServer:
    def test_the_page_and_the_state_are_served(self, served: str) -> None:
        status, headers, body = get(served, "/")
        assert status == 200
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        page = body.decode()
        for element in ('id="phase"', 'id="decisions"', 'id="chart-failures"', 'id="checklist"'):
            assert element in page
        assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing remote
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        status, headers, body = get(served, "/api/state?x=1")
        assert (status, headers["Content-Type"]) == (200, "application/json")
        state = json.loads(body)
        assert state["target"] == "default"
        assert state["run"] is None
        assert state["served"] >= state["now"]

    def test_other_paths_are_404_and_other_methods_405(self, served: str) -> None:
        assert get(served, "/api/other")[0] == 404
        assert get(served, "/index.html")[0] == 404
        for method in ("POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):
            status, headers, _ = get(served, "/api/state", method=method)
            assert (status, headers["Allow"]) == (405, "GET"), method

    def test_a_request_for_another_host_name_is_refused(self, served: str) -> None:
        """A web site whose name was re-pointed at 127.0.0.1 cannot read the state."""
        assert get(served, "/api/state", host="attacker.example:8765")[0] == 403
        assert get(served, "/api/state", host="localhost:8765")[0] == 200

    def test_it_listens_on_127_0_0_1_only(self, served: str) -> None:
        port = int(served.rstrip("/").rsplit(":", 1)[1])
        assert served == f"http://127.0.0.1:{port}/"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        with pytest.raises(ConnectionRefusedError):  # another loopback address: nobody there
            socket.create_connection(("127.0.0.2", port), timeout=5).close()

    def test_the_poller_keeps_the_state_fresh(self, served: str) -> None:
        first = json.loads(get(served, "/api/state")[2])["now"]
        until(lambda: json.loads(get(served, "/api/state")[2])["now"] > first, timeout=30)

    def test_a_port_in_use_is_a_configuration_error(self, tmp_path: Path) -> None:
        with (
            socket.socket() as taken,
            session(sql_files(tmp_path / "m", 1), f"sqlite:///{tmp_path / 'x.db'}") as opened,
        ):
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with (
                pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}.*--port"),
                Dashboard(opened.orchestrator).serve(port=port),
            ):
                pass  # pragma: no cover - never reached


# ------------------------------------------------------------------ the command


@contextlib.contextmanager
def dashboard_process(migrations: Path, url: str) -> Iterator[str]:
    """`lupo-migrate dashboard` in a process of its own; yields its URL; Ctrl-C stops it."""
    command = [sys.executable, "-m", "lupo_migrate", "dashboard", str(migrations), "--db", url]
    process = subprocess.Popen(
        [*command, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=migrations.parent,
        # A shell starts a background job with SIGINT ignored, and Python keeps an ignored
        # SIGINT ignored: give the command the Ctrl-C a terminal would, however pytest runs.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    out, err = process.stdout, process.stderr
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")))
    reader.start()
    try:
        first = until(lambda: lines[0] if lines else process.poll() is not None, timeout=90)
        assert isinstance(first, str), err.read()
        found = re.fullmatch(r"dashboard: (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops it\)\n", first)
        assert found, first
        yield found.group(1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, err.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=10)


def test_the_command_prints_its_url_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    migrations = sql_files(tmp_path / "m", 2)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with session(migrations, url) as opened:
        opened.apply()
    with dashboard_process(migrations, url) as page:
        state = json.loads(get(page, "/api/state")[2])
        assert (state["run"]["outcome"], state["run"]["steps_done"]) == ("completed", 2)


# ------------------------------------------------------------------ the browser

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
)


def _no_browser(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(
            f"{reason} (CI must run the browser test: apt-get install chromium"
            " chromium-driver; pip install selenium)"
        )
    pytest.skip(reason)


@pytest.fixture(name="browser")
def _browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium driven by Selenium (Debian's chromium and chromedriver)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        _no_browser(f"selenium is not installed: {error}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        _no_browser("chromium or chromedriver is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def text(driver: Any, selector: str) -> str | None:
    """The text a person sees in the first element matching *selector* (None: no such one)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(5):
        try:
            return str(driver.find_element(By.CSS_SELECTOR, selector).text)
        except NoSuchElementException:
            return None
        except StaleElementReferenceException:  # redrawn between finding and reading
            continue
    return None


def left_seconds(countdown: str) -> int:
    found = re.fullmatch(r"(\d+)d (\d\d)h (\d\d)m (\d\d)s left", countdown)
    assert found, countdown
    days, hours, minutes, seconds = map(int, found.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


@pytest.mark.mariadb
@pytest.mark.browser
@needs_corpus
def test_a_browser_sees_the_phase_change_and_a_d_decision_count_down(
    tmp_path: Path, browser: Any
) -> None:
    """Issue 7's acceptance: Chromium opens the dashboard during a real run on MariaDB."""
    root = tmp_path / "p"
    migrations = sql_files(root / "migrations", 6, sleep=0.5)
    (migrations / "V7__docs.md").write_text(SET_VERSION)
    shutil.copytree(CORPUS / "docs", root / "docs")
    with fresh_database("mariadb", tmp_path) as url, dashboard_process(migrations, url) as page:
        browser.get(page)
        until(lambda: (text(browser, "#updated") or "").startswith("read "), timeout=60)
        assert text(browser, "#phase") == "no run yet"

        outcome: list[Any] = []

        def run() -> None:
            with session(migrations, url) as opened:
                outcome.append(opened.apply())

        runner = threading.Thread(target=run)
        runner.start()
        phases: list[str] = []
        steps: list[str] = []
        etas: list[str] = []
        holders: list[str] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            phase = text(browser, "#phase") or ""
            if not phases or phases[-1] != phase:
                phases.append(phase)
            if phase == "migrating":
                steps.append(text(browser, "#step") or "")
                etas.append(text(browser, "#eta") or "")
                holders.append(f"{text(browser, '#lock')} | {text(browser, '#freeze')}")
            if not runner.is_alive() and phase == "idle":
                break
            time.sleep(0.1)
        runner.join(timeout=60)
        (result,) = outcome
        assert result.run.outcome.value == "completed"
        assert "migrating" in phases, phases
        assert phases[-1] == "idle", phases
        assert phases.index("migrating") < len(phases) - 1
        assert text(browser, "#outcome") == "completed"
        assert any(re.search(r"V\d__t\d \(\d of 7 step\(s\) applied\)", s) for s in steps), steps
        assert any(e.startswith("about ") for e in etas), etas
        assert any(re.search(r"since .*heartbeat \d+s ago \| by .* expires", h) for h in holders)
        until(
            lambda: (text(browser, "#lock"), text(browser, "#freeze")) == ("free", "none"),
            timeout=30,
        )
        timeline = text(browser, "#timeline") or ""
        assert "migrating" in timeline
        assert "idle (completed)" in timeline

        countdown = "#decisions .countdown[data-class='D']"
        first = until(lambda: text(browser, countdown), timeout=60)
        assert 30 * 86400 - 600 < left_seconds(first) <= 30 * 86400, first
        later = first
        for _ in range(10):  # two reads a little over a second apart differ
            time.sleep(1.1)
            later = text(browser, countdown) or ""
            if later != first:
                break
        assert later != first
        assert left_seconds(later) < left_seconds(first)

        checklist = until(lambda: text(browser, "#checklist"), timeout=30)
        assert "Validation passed" in checklist
        assert len(browser.find_elements("css selector", "#checklist li")) == 15
        assert browser.find_elements("css selector", "#chart-rollbacks rect")
