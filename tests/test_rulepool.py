"""The rules in a worker process ([rules] workers, bot.rulepool): the same
findings as in the main process, the first thread checked without waiting
for a worker, and a worker that dies replaced without losing a thread."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from bot.config import Config, RulesConfig
from bot.data import ThreadResult
from bot.pipeline import HERE_FIRST, MANY_THREADS, Checker
from bot.sources import InputSet
from tests.conftest import DATA

# Real threads with findings of several rules (tests/data/labelled).
INPUTS = sorted(str(p) for p in (DATA / "labelled").glob("problem-*.mbox"))


def _config(workers: int) -> Config:
    return dataclasses.replace(Config(), rules=RulesConfig(workers=workers))


def _check_all(checker: Checker, inputs: list[str] = INPUTS) -> list[ThreadResult]:
    return [checker.check_thread(raws)
            for raws in InputSet(inputs, checker.cfg.input).threads()]


def _findings(results: list[ThreadResult]) -> list[object]:
    return [res.rules for tr in results for res in tr.results]


def test_the_worker_finds_what_the_main_process_finds() -> None:
    with Checker(_config(0)) as here:
        expected = _check_all(here)
    with Checker(_config(1)) as pooled:
        got = _check_all(pooled)
        assert pooled.pool is not None and pooled.pool.handed >= 10
    assert sum(len(r.findings) for r in _findings(expected)) >= 10
    assert _findings(got) == _findings(expected)
    assert [d for tr in got for r in tr.results for d in r.drafts] == \
        [d for tr in expected for r in tr.results for d in r.drafts]


def test_the_main_process_takes_back_what_it_would_wait_for() -> None:
    # Every thread is started before the first is finished: the worker,
    # still starting, has them all queued, so the main process checks the
    # newest ones itself instead of waiting. Findings and order unchanged.
    with Checker(_config(0)) as here:
        expected = _findings(_check_all(here))
    with Checker(_config(1)) as checker:
        started = [checker.start_thread(raws)
                   for raws in InputSet(INPUTS, checker.cfg.input).threads()]
        got = _findings([checker.finish_thread(s) for s in started])
        assert checker.pool is not None and checker.pool.taken_back >= 1
    assert got == expected


def test_a_thread_let_go_is_not_run_and_leaves_nothing_behind() -> None:
    # A poll cycle cut short lets go of the threads it started: the worker,
    # still starting, does not run what it has not started, and the threads
    # checked next get their own findings.
    with Checker(_config(0)) as here:
        expected = _findings(_check_all(here))
    with Checker(_config(1)) as checker:
        threads = list(InputSet(INPUTS, checker.cfg.input).threads())
        dropped = [checker.start_thread(raws) for raws in threads]
        for started in dropped:
            checker.cancel_thread(started)
        futures = [j.future for s in dropped for j in s.jobs if j.future is not None]
        assert futures and any(f.cancelled() for f in futures)
        got = _findings([checker.finish_thread(checker.start_thread(raws))
                         for raws in threads])
    assert got == expected


def test_a_short_run_never_starts_a_worker_process() -> None:
    # The first HERE_FIRST series the rules read closely are checked in
    # the main process: one patch, or a poll finding a few threads, never
    # waits for a worker to start; the next one goes to the worker.
    from bot.lore.assemble import assemble
    from bot.rules.relevance import read_closely

    before = set(multiprocessing.active_children())
    with Checker(_config(1)) as checker:
        assert checker.pool is not None
        closely = 0
        for raws in InputSet(INPUTS, checker.cfg.input).threads():
            assert checker.check_thread(raws).results
            closely += sum(read_closely(s, checker.context) for s in assemble(raws).series)
            if closely <= HERE_FIRST:
                assert checker.pool.handed == 0
                assert set(multiprocessing.active_children()) == before
            else:
                break
        assert closely > HERE_FIRST and checker.pool.handed == closely - HERE_FIRST


def test_a_run_with_many_threads_ahead_starts_the_worker_at_once() -> None:
    # A poll cycle catching up (MANY_THREADS or more to fetch) starts the
    # worker before the first thread, and hands it every series read
    # closely from the first; a few threads ahead change nothing.
    from bot.lore.assemble import assemble
    from bot.rules.relevance import read_closely

    threads = list(InputSet(INPUTS, Config().input).threads())
    with Checker(_config(1)) as checker:
        assert checker.pool is not None
        before = set(multiprocessing.active_children())
        checker.expect(MANY_THREADS - 1)
        assert not checker.pool.started
        assert set(multiprocessing.active_children()) == before
        checker.expect(MANY_THREADS)
        assert checker.pool.started
        assert set(multiprocessing.active_children()) - before, "no worker process started"
        closely = 0
        for raws in threads:
            assert checker.check_thread(raws).results
            closely += sum(read_closely(s, checker.context) for s in assemble(raws).series)
            assert checker.pool.handed == closely
        assert closely > HERE_FIRST
    with Checker(_config(0)) as alone:
        alone.expect(MANY_THREADS)   # no worker configured: nothing to start
        assert alone.pool is None


def test_a_killed_worker_loses_no_thread(caplog: pytest.LogCaptureFixture) -> None:
    # A real fault: the worker process is killed (as the OOM killer would)
    # while it holds a thread's rules; that thread is checked in the main
    # process instead, and the next threads get a new worker.
    with Checker(_config(0)) as here:
        expected = _findings(_check_all(here))
    with Checker(_config(1)) as checker:
        assert checker.pool is not None
        results = []
        workers: set[multiprocessing.process.BaseProcess] = set()
        before = set(multiprocessing.active_children())
        for raws in InputSet(INPUTS, checker.cfg.input).threads():
            handed = checker.pool.handed
            started = checker.start_thread(raws)
            if checker.pool.handed > handed and not workers:   # the first one handed over
                workers = set(multiprocessing.active_children()) - before
                assert workers, "no worker process was started for the thread handed over"
                for proc in workers:
                    assert proc.pid is not None
                    os.kill(proc.pid, signal.SIGKILL)
            results.append(checker.finish_thread(started))
        assert workers, "no thread was handed to a worker"
        after = set(multiprocessing.active_children()) - before - workers
        assert after, "no new worker process after the first one died"
    assert _findings(results) == expected
    lost = [r.getMessage() for r in caplog.records if "worker process lost" in r.getMessage()]
    assert lost and "checking that series here" in lost[0]


def test_a_worker_outlives_no_killed_main_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # `bot check` over several threads, killed outright while its worker is
    # up: the worker stops by itself and nothing holds the output open.
    import subprocess
    import sys
    import time

    cfg = tmp_path / "bot.toml"
    cfg.write_text("[rules]\nworkers = 1\n")
    env = dict(os.environ, BOT_CONFIG=str(cfg), BOT_STATE_DIR=str(tmp_path / "state"))
    proc = subprocess.Popen([sys.executable, "-m", "bot", "check", "--format", "json",
                             *INPUTS * 20], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    t0 = time.monotonic()
    children = _children(proc.pid)
    while not children and proc.poll() is None and time.monotonic() - t0 < 30:
        time.sleep(0.05)
        children = _children(proc.pid)
    assert children, "no rules worker under the running bot check"
    time.sleep(0.5)              # the worker is busy with rules
    proc.kill()
    t0 = time.monotonic()
    proc.communicate(timeout=30)  # EOF: no worker holds stdout or stderr
    while any(_alive(pid) for pid in children) and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc/%s/stat" % entry).read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_read_ahead_is_bounded_by_threads_and_by_bytes() -> None:
    from bot.data import RawMessage
    from bot.pipeline import AHEAD_BYTES, Window

    def mail(size: int) -> list[RawMessage]:
        return [RawMessage(origin="test", data=b"x" * size)]

    none_ahead: Window[str] = Window(0)
    none_ahead.push("a", mail(10))
    assert none_ahead.over()
    by_count: Window[str] = Window(2)
    for name in "abc":
        assert not by_count.over()
        by_count.push(name, mail(10))
    assert by_count.over() and by_count.pop() == "a" and not by_count.over()
    by_bytes: Window[str] = Window(64)
    by_bytes.push("huge", mail(AHEAD_BYTES + 1))
    assert not by_bytes.over()            # the newest thread is always kept
    by_bytes.push("next", mail(10))
    assert by_bytes.over() and by_bytes.pop() == "huge"
    assert not by_bytes.over() and len(by_bytes) == 1


def test_a_taken_back_series_raises_on_its_own_thread() -> None:
    # A fault that cannot be caused for real: the engine guards each rule,
    # so the main process's rules are replaced by ones that fail on one
    # series. The worker is still starting when the first result is asked
    # for, so the main process takes back the newest series (the failing
    # one) first; its exception comes out when that series is asked for,
    # and every series before it gets its own findings.
    from bot.lore.assemble import assemble
    from bot.rulepool import RulesPool

    with Checker(_config(0)) as here:
        series = [s for raws in InputSet(INPUTS, here.cfg.input).threads()
                  for s in assemble(raws).series]
        trees = [here.tree(s) for s in series]
        expected = [here._rules(s, t) for s, t in zip(series, trees, strict=True)]
        failing = series[-1].message_id

        def rules(s, t):  # type: ignore[no-untyped-def]
            if s.message_id == failing:
                raise RuntimeError("planted failure in %s" % failing)
            return here._rules(s, t)

        pool = RulesPool(_config(1), rules)
        try:
            jobs = [pool.submit(s, t) for s, t in zip(series, trees, strict=True)]
            got = [pool.result(job) for job in jobs[:-1]]
            assert pool.taken_back >= 1
            with pytest.raises(RuntimeError, match="planted failure in " + failing):
                pool.result(jobs[-1])
        finally:
            pool.close()
    assert len(series) >= 3
    assert got == expected[:-1]
