"""The outbox against a real SMTP server on 127.0.0.1 (aiosmtpd, started by
each test), on SQLite and PostgreSQL: what arrives, TLS and login, refusals,
nothing ever sent without a recorded approval, and a sender killed with
SIGKILL between claim and send, then the recovery."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import os
import signal
import subprocess
import sys
import threading

import pytest
from sqlalchemy import func, select, text

from bot import config as botconfig
from bot import workflow as wf
from bot.errors import BadInput, ConfigError, Transient
from bot.outbox import send_due
from bot.store.db import Database
from bot.store.models import Draft, DraftAction, DraftEvent, DraftState
from tests.conftest import DATA
from tests.smtp import SmtpServer, smtp_server  # noqa: F401  (fixture)
from tests.test_drafts_workflow import MAZ, POLARITY, SERIES, _revision, bot, store

RULES = DATA / "rules"


def sending(cfg: botconfig.Config, server: SmtpServer, **smtp: object) -> botconfig.Config:
    values: dict[str, object] = {"send_enabled": True, "host": "127.0.0.1",
                                 "port": server.port, "timeout": 10.0}
    values.update(smtp)
    return dataclasses.replace(cfg, smtp=dataclasses.replace(cfg.smtp, **values))


def smtp_env(server: SmtpServer) -> dict[str, str]:
    return {"BOT_SMTP_SEND_ENABLED": "true", "BOT_SMTP_HOST": "127.0.0.1",
            "BOT_SMTP_PORT": str(server.port), "BOT_SMTP_TIMEOUT": "10"}


def approve_all(database: Database) -> list[int]:
    with database.transaction() as s:
        ids = sorted(v.id for v in wf.list_drafts(s, states=[DraftState.DRAFT]))
        for i in ids:
            wf.approve(s, MAZ, i)
    return ids


@pytest.fixture
def database(migrated: botconfig.Config):  # type: ignore[no-untyped-def]
    d = Database(migrated)
    yield d
    d.close()


def _state(database: Database, i: int) -> wf.DraftView:
    with database.transaction() as s:
        return wf.show(s, i)


def test_sending_delivers_what_was_approved_once(migrated, database, smtp_server) -> None:  # type: ignore[no-untyped-def]
    store(migrated, SERIES)
    ids = approve_all(database)
    report = send_due(sending(migrated, smtp_server), database)
    assert sorted(i for i, _ in report.sent) == ids and not report.failed
    assert len(smtp_server.received) == 2
    for got, i in zip(smtp_server.received, ids, strict=True):
        v = _state(database, i)
        msg = email.message_from_bytes(got.data, policy=email.policy.default)
        assert v.state is DraftState.SENT and v.sent_at is not None
        assert v.smtp_reply and v.smtp_reply.startswith("250 2.0.0 Ok: queued")
        assert str(msg["Message-ID"]) == "<%s>" % v.reply_message_id
        assert str(msg["From"]) == "Marc Zyngier <maz@kernel.org>" == v.from_addr
        assert str(msg["In-Reply-To"]) == "<%s>" % v.in_reply_to
        assert str(msg["Subject"]) == v.subject
        assert msg.get_content().replace("\r\n", "\n") == v.body
        assert got.mail_from == "maz@kernel.org"
        assert sorted(got.rcpt_tos) == sorted(["dev@example.org", "kvmarm@lists.linux.dev",
                                               "oliver.upton@linux.dev",
                                               "linux-arm-kernel@lists.infradead.org"])
        assert [e.action for e in v.events][-2:] == [DraftAction.CLAIMED, DraftAction.SENT]
    again = send_due(sending(migrated, smtp_server), database)
    assert not again.sent and len(smtp_server.received) == 2


def test_starttls_and_login_from_the_environment(migrated, database, tmp_path,  # type: ignore[no-untyped-def]
                                                 monkeypatch) -> None:
    server = SmtpServer(tls="starttls", cert_dir=tmp_path, login=("maz", "s3cret")).start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        store(migrated, POLARITY)
        approve_all(database)
        cfg = sending(migrated, server, starttls=True, user="maz",
                      password=botconfig.Secret(env="BOT_TEST_PW", value=None))
        with pytest.raises(ConfigError, match="BOT_TEST_PW"):
            send_due(cfg, database)
        wrong = sending(migrated, server, starttls=True, user="maz",
                        password=botconfig.Secret(env="BOT_TEST_PW", value="nope"))
        with pytest.raises(ConfigError, match="refused the login"):
            send_due(wrong, database)
        assert server.received == []
        # The password only ever comes from the environment, through the config.
        env = botconfig.load(DATA / "config" / "test.toml", environ={
            "BOT_DATABASE_URL": migrated.database_url, "BOT_SMTP_PASSWORD": "s3cret"})
        assert env.smtp.password is not None and "s3cret" not in repr(env.smtp)
        report = send_due(sending(migrated, server, starttls=True, user="maz",
                                  password=env.smtp.password), database)
        assert len(report.sent) == 1 and server.logins == ["maz"]
        assert len(server.received) == 1
        [v] = [_state(database, i) for i, _ in report.sent]
        assert v.state is DraftState.SENT
    finally:
        server.stop()


def test_implicit_tls(migrated, database, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    server = SmtpServer(tls="implicit", cert_dir=tmp_path).start()
    try:
        store(migrated, POLARITY)
        approve_all(database)
        # Without the CA the certificate is refused: nothing is sent, nothing lost.
        with pytest.raises(Transient, match="unavailable"):
            send_due(sending(migrated, server, implicit_tls=True), database)
        assert [v.state for v in _all(database)] == [DraftState.APPROVED]
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        report = send_due(sending(migrated, server, implicit_tls=True), database)
        assert len(report.sent) == 1 and len(server.received) == 1
    finally:
        server.stop()


def _all(database: Database) -> list[wf.DraftView]:
    with database.transaction() as s:
        return wf.list_drafts(s, include_superseded=True)


def test_refusals_temporary_then_permanent(migrated, database, smtp_server) -> None:  # type: ignore[no-untyped-def]
    store(migrated, POLARITY)
    [i] = approve_all(database)
    cfg = sending(migrated, smtp_server)
    smtp_server.behaviour.rcpt_reply = "451 4.3.0 try again later"
    report = send_due(cfg, database)
    assert [d for d, _ in report.deferred] == [i]
    v = _state(database, i)
    assert v.state is DraftState.APPROVED and "451" in (v.last_error or "")
    smtp_server.behaviour.rcpt_reply = None
    smtp_server.behaviour.data_reply = "554 5.7.1 message refused"
    report = send_due(cfg, database)
    v = _state(database, i)
    assert [d for d, _ in report.failed] == [i] and v.state is DraftState.FAILED
    assert v.smtp_reply == "554 5.7.1 message refused" and smtp_server.received == []
    # A failed draft is sent again only after a new approval.
    assert not send_due(cfg, database).sent
    smtp_server.behaviour.data_reply = None
    with database.transaction() as s:
        wf.approve(s, MAZ, i)
    assert len(send_due(cfg, database).sent) == 1 and len(smtp_server.received) == 1


def test_an_unreachable_server_is_transient_and_loses_nothing(migrated, database) -> None:  # type: ignore[no-untyped-def]
    store(migrated, POLARITY)
    [i] = approve_all(database)
    from tests.pi import free_port
    cfg = dataclasses.replace(migrated, smtp=dataclasses.replace(
        migrated.smtp, send_enabled=True, port=free_port(), timeout=2.0))
    with pytest.raises(Transient, match="unavailable"):
        send_due(cfg, database)
    v = _state(database, i)
    assert v.state is DraftState.APPROVED and v.events[-1].action is DraftAction.RELEASED


def _snapshot(database: Database) -> tuple[list[tuple[object, ...]], int]:
    with database.transaction() as s:
        rows = [tuple(r) for r in s.execute(select(Draft.__table__).order_by(Draft.id))]
        return rows, s.scalar(select(func.count()).select_from(DraftEvent)) or 0


def test_nothing_is_ever_sent_without_a_recorded_approval(migrated, database,  # type: ignore[no-untyped-def]
                                                         smtp_server) -> None:
    raw = POLARITY.read_bytes()
    store(migrated, SERIES)
    store(migrated, raw)
    store(migrated, RULES / "register-width-trigger.patch")
    store(migrated, RULES / "barrier-trigger.patch")
    with database.transaction() as s:
        ids = {v.subject: v.id for v in wf.list_drafts(s)}
    never = ids["Re: [PATCH 1/2] KVM: arm64: Keep the host MDCR_EL2 in the vcpu"]
    discarded = ids["Re: [PATCH 2/2] KVM: arm64: Stop trapping TLB maintenance for "
                    "single-vcpu guests"]
    edited = ids["Re: [PATCH] KVM: arm64: Keep the host MDCR_EL2 in the vcpu"]
    tampered = ids["Re: [PATCH] KVM: arm64: VHE: Use sysreg_clear_set() to clear TGE"]
    superseded = ids["Re: [RFC] KVM: arm64: Don't force broadcast tlbi when guest is running"]
    with database.transaction() as s:
        wf.discard(s, MAZ, discarded)
        for i in (edited, tampered, superseded):
            wf.approve(s, MAZ, i)
        wf.edit(s, MAZ, edited, body="Edited after approval.\n")
    with database.transaction() as s:
        s.execute(text("UPDATE draft SET body = 'not what was approved' WHERE id = :i"),
                  {"i": tampered})
    store(migrated, _revision(raw, 2))  # supersedes the approved RFC draft

    # Sending disabled (the default): says so, changes nothing.
    before = _snapshot(database)
    for args in ([], [str(superseded)]):
        proc = bot(migrated, "drafts", "send", *args)
        assert proc.returncode == 2 and "sending is disabled" in proc.stderr, proc.stderr
    assert _snapshot(database) == before

    env = smtp_env(smtp_server)
    for i, why in [(never, "is draft, not approved"), (discarded, "is discarded"),
                   (edited, "is draft, not approved"), (superseded, "superseded"),
                   (12345, "no such draft")]:
        proc = bot(migrated, "drafts", "send", str(i), env=env)
        assert proc.returncode == 2 and why in proc.stderr, (i, proc.stderr)
        assert "nothing was sent" in proc.stderr
        assert _snapshot(database) == before
    # Sending everything due: the tampered draft fails its check, nothing
    # reaches the server.
    proc = bot(migrated, "drafts", "send", env=env)
    assert proc.returncode == 3 and "changed after it was approved" in proc.stdout
    assert smtp_server.received == []
    assert _state(database, tampered).state is DraftState.FAILED
    for i in (never, discarded, edited, superseded):
        assert _state(database, i).state is not DraftState.SENT
    # The server works: a properly approved draft does arrive.
    with database.transaction() as s:
        wf.approve(s, MAZ, never)
    proc = bot(migrated, "drafts", "send", str(never), env=env)
    assert proc.returncode == 0 and "sent: 250" in proc.stdout, proc.stderr
    assert len(smtp_server.received) == 1


def _sender(cfg: botconfig.Config, server: SmtpServer) -> subprocess.Popen[str]:
    env = {"BOT_DATABASE_URL": cfg.database_url, "BOT_STATE_DIR": cfg.state_dir,
           "BOT_CONFIG": str(DATA / "config" / "test.toml"), "PATH": "/usr/bin:/bin",
           **smtp_env(server)}
    return subprocess.Popen([sys.executable, "-m", "bot", "drafts", "send"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_at(cfg: botconfig.Config, server: SmtpServer, where: str) -> None:
    server.behaviour.hold_at = where
    proc = _sender(cfg, server)
    try:
        assert server.behaviour.arrived.wait(30), proc.communicate(timeout=5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    server.behaviour.hold_at = None
    server.behaviour.release.set()


def test_killed_before_handing_over_then_recovered_and_sent_once(migrated, database,  # type: ignore[no-untyped-def]
                                                                 smtp_server) -> None:
    store(migrated, POLARITY)
    [i] = approve_all(database)
    _kill_at(migrated, smtp_server, "rcpt")
    v = _state(database, i)
    assert v.state is DraftState.SENDING and smtp_server.received == []
    # The next run sweeps the dead sender's claim at once (its lease has not
    # run out) and sends the message: once.
    proc = bot(migrated, "drafts", "send", env=smtp_env(smtp_server))
    assert proc.returncode == 0, proc.stderr
    assert "recovered (approved)" in proc.stdout and "sent: 250" in proc.stdout
    assert len(smtp_server.received) == 1
    v = _state(database, i)
    assert v.state is DraftState.SENT and v.attempts == 2
    assert [e.action for e in v.events][-4:] == [DraftAction.CLAIMED, DraftAction.RECOVERED,
                                                 DraftAction.CLAIMED, DraftAction.SENT]


def test_killed_while_handing_over_is_never_resent_by_itself(migrated, database,  # type: ignore[no-untyped-def]
                                                             smtp_server) -> None:
    store(migrated, POLARITY)
    [i] = approve_all(database)
    _kill_at(migrated, smtp_server, "data")
    assert len(smtp_server.received) == 1  # the server has it; the sender never knew
    proc = bot(migrated, "drafts", "send", env=smtp_env(smtp_server))
    assert proc.returncode == 3 and "recovered (failed)" in proc.stdout
    v = _state(database, i)
    assert v.state is DraftState.FAILED and v.reply_message_id in (v.last_error or "")
    assert len(smtp_server.received) == 1
    # Only a maintainer's new approval sends it again, with the same
    # Message-ID, so the duplicate is recognisable.
    with database.transaction() as s:
        again = wf.approve(s, MAZ, i)
    assert again.reply_message_id == v.reply_message_id
    assert "approved again after" in again.events[-1].detail
    assert len(send_due(sending(migrated, smtp_server), database).sent) == 1
    ids = {str(email.message_from_bytes(r.data, policy=email.policy.default)["Message-ID"])
           for r in smtp_server.received}
    assert len(smtp_server.received) == 2 and ids == {"<%s>" % v.reply_message_id}


def test_a_claim_whose_lease_ran_out_is_swept(migrated, database, smtp_server) -> None:  # type: ignore[no-untyped-def]
    store(migrated, POLARITY)
    [i] = approve_all(database)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with database.transaction() as s:
        s.execute(text("UPDATE draft SET state = 'sending', claimed_by = 'elsewhere:1:x', "
                       "lease_until = :t WHERE id = :i"), {"t": past, "i": i})
    report = send_due(sending(migrated, smtp_server), database)
    assert [(d, st) for d, st, _ in report.recovered] == [(i, DraftState.APPROVED)]
    assert len(report.sent) == 1 and len(smtp_server.received) == 1


def test_a_live_claim_is_left_alone(migrated, database, smtp_server) -> None:  # type: ignore[no-untyped-def]
    store(migrated, POLARITY)
    [i] = approve_all(database)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    with database.transaction() as s:
        s.execute(text("UPDATE draft SET state = 'sending', claimed_by = 'elsewhere:1:x', "
                       "lease_until = :t WHERE id = :i"), {"t": later, "i": i})
    report = send_due(sending(migrated, smtp_server), database)
    assert not report.recovered and not report.sent and smtp_server.received == []
    assert _state(database, i).state is DraftState.SENDING


def test_two_senders_at_once_send_each_draft_once(migrated, smtp_server) -> None:  # type: ignore[no-untyped-def]
    for path in (SERIES, POLARITY, RULES / "barrier-trigger.patch",
                 RULES / "register-width-trigger.patch"):
        store(migrated, path)
    first = Database(migrated)
    ids = approve_all(first)
    cfg = sending(migrated, smtp_server)
    sent: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        database = Database(cfg)
        try:
            sent.extend(i for i, _ in send_due(cfg, database).sent)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    first.close()
    assert errors == []
    assert sorted(sent) == ids and len(smtp_server.received) == len(ids) == 5


def test_send_of_unknown_ids_is_refused_before_anything(migrated, database, smtp_server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match="no such draft"):
        send_due(sending(migrated, smtp_server), database, ids=[7])


def test_recovery_sees_a_dead_process_of_this_host(migrated) -> None:  # type: ignore[no-untyped-def]
    from bot.outbox import _dead, owner_id
    me = owner_id()
    assert not _dead(me)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    host = me.split(":")[0]
    assert _dead("%s:%s:x" % (host, proc.stdout.strip()))
    assert not _dead("another-host:1:x")

