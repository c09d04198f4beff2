"""The dashboard's views and actions through Flask's test client, on a
real SQLite and PostgreSQL database filled by the real pipeline from
fixture threads (`bot check --store`)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from bot.store.db import Database
from bot.store.models import (
    Draft,
    DraftState,
    Finding,
    FindingStatus,
    PollResult,
    Quarantine,
    Series,
    utcnow,
)
from bot.store.status import record_poll_ended, record_started
from tests.smtp import SmtpServer, smtp_server  # noqa: F401  (fixture)
from tests.test_rereview import C_V1, C_V2, CONSTRUCTED, OPTIN_V1_MID, OPTIN_V2_MID, split
from tests.web_support import REVISIONS, THREADS, add_user, login, make_app, post, store, web_config

MAINT = "maint@example.org"
OPTIN_V1 = REVISIONS / "opt-in-nvhe-v1-trimmed.mbox"
OPTIN_V2 = REVISIONS / "opt-in-nvhe-v2-trimmed.mbox"
PRE = REVISIONS / "split-nvhe-v1-debug-sr.mbox"


def rows(cfg, model, *where):
    database = Database(cfg)
    try:
        with database.transaction() as s:
            return list(s.scalars(select(model).where(*where).order_by(model.id)))
    finally:
        database.close()


@pytest.fixture
def web(migrated):
    cfg = web_config(migrated)
    add_user(cfg, MAINT)
    return cfg


def client_for(cfg, logged_in=True):
    client = make_app(cfg).test_client()
    if logged_in:
        assert login(client, MAINT).status_code == 303
    return client


def text(client, path, status=200):
    r = client.get(path)
    assert r.status_code == status, (path, r.status_code)
    return r.get_data(as_text=True)


def test_inbox_filters_search_pages_and_counts(web):
    store(web, *sorted(THREADS.glob("*.mbox")))
    client = client_for(web)
    api = client.get("/api/series?state=all").json
    everything = api["total"]
    assert everything == api["counts"]["all"] >= 5
    attention = client.get("/api/series").json
    assert attention["total"] == api["counts"]["attention"] <= everything
    assert all(s["open_findings"] or s["drafts_waiting"] for s in attention["series"])
    page = text(client, "/")
    assert "Needs attention <b>%d</b>" % api["counts"]["attention"] in page
    clean = client.get("/api/series?state=clean").json["series"]
    assert all(s["open_findings"] == 0 for s in clean)
    # Author, category, severity, list.
    one = api["series"][0]
    by_author = client.get("/api/series?state=all&author=%s" % one["author"].split()[0]).json
    assert one["message_id"] in [s["message_id"] for s in by_author["series"]]
    assert all(one["author"].split()[0] in s["author"] for s in by_author["series"])
    found = client.get("/api/findings?status=open").json["findings"]
    f = found[0]
    by_cat = client.get("/api/series?state=all&category=%s&severity=%s"
                        % (f["category"], f["severity"])).json["series"]
    assert f["series"] in [s["message_id"] for s in by_cat]
    other_sev = {"error", "warning", "question", "info"} - {
        x["severity"] for x in found if x["series"] == f["series"]}
    for sev in other_sev:
        assert f["series"] not in [s["message_id"] for s in client.get(
            "/api/series?state=all&severity=" + sev).json["series"]]
    assert client.get("/api/series?state=all&list=kvmarm").json["total"] >= 1
    assert client.get("/api/series?state=all&list=no-such-list").json["total"] == 0
    # Search by subject words and by a patch's Message-ID.
    subject = one["subject"]
    word = max(re.findall(r"[A-Za-z_]{5,}", subject), key=len)
    assert one["message_id"] in [s["message_id"] for s in client.get(
        "/api/series?state=all&q=" + word).json["series"]]
    assert [s["message_id"] for s in client.get(
        "/api/series?state=all&q=<%s>" % one["message_id"]).json["series"]] == [
        one["message_id"]]
    assert client.get("/api/series?state=all&q=nothing-like-this-anywhere").json["total"] == 0
    # Pages.
    small = client_for(web_config(web, page_size=2))
    first = small.get("/api/series?state=all").json
    assert first["pages"] == -(-everything // 2) and len(first["series"]) == 2
    second = small.get("/api/series?state=all&page=2").json["series"]
    assert not {s["message_id"] for s in second} & {s["message_id"] for s in first["series"]}
    html = text(small, "/?state=all")
    assert "older →" in html and "page 1 of %d" % first["pages"] in html
    assert 'rel="next" href="/?page=2&amp;state=all"' in html
    # Nonsense filter values are ignored, not errors.
    assert small.get("/?state=bogus&severity=bogus&page=x").status_code == 200


def test_inbox_on_an_empty_database(web):
    page = text(client_for(web), "/")
    assert "no series stored yet" in page


def test_series_page_revisions_findings_at_their_lines_trailers_base_lore(web):
    store(web, OPTIN_V1)
    store(web, OPTIN_V2)
    store(web, PRE)
    client = client_for(web)
    page = text(client, "/series/" + OPTIN_V2_MID)
    v1 = text(client, "/series/" + OPTIN_V1_MID)
    assert 'href="/series/%s">v1</a>' % OPTIN_V1_MID in page
    assert re.search(r'class="current"><a href="/series/%s">v2</a>\s*<span class="pill new">'
                     r'(\d+) new' % re.escape(OPTIN_V2_MID), page)
    assert "1 resolved" in page and "Resolved in v2" in page
    (width,) = rows(web, Finding, Finding.series_id == _series_id(web, OPTIN_V1_MID))
    assert ('href="/series/%s#finding-%d">register-width</a>' % (OPTIN_V1_MID, width.id)
            in page)
    # In v1, the finding sits right under its line of the diff.
    row = re.search(r'<tr class="l add flagged" id="p(\d+)-%s-%d">.*?</tr>\s*<tr class="inline">'
                    r'<td colspan="3">\s*<div class="finding[^"]*" id="finding-%d">'
                    % (re.escape(width.file), width.line, width.id), v1, re.S)
    assert row, "finding %d not at %s:%d" % (width.id, width.file, width.line)
    assert "https://lore.kernel.org/all/%s/" % OPTIN_V2_MID in page or \
        "%s/%s/" % (web.lore.url, OPTIN_V2_MID) in page
    assert "Checked against" in page
    # Pre-existing findings are set apart, not in the diff.
    pre_series = rows(web, Series, Series.message_id.notin_([OPTIN_V1_MID, OPTIN_V2_MID]))[0]
    pre = rows(web, Finding, Finding.series_id == pre_series.id,
               Finding.status == FindingStatus.PRE_EXISTING)
    assert pre
    page = text(client, "/series/" + pre_series.message_id)
    apart = page[page.index('class="apart pre"'):]
    for f in pre:
        assert 'id="finding-%d"' % f.id in apart
        assert 'id="finding-%d"' % f.id not in page[:page.index('class="apart pre"')]
    assert text(client, "/series/no-such-series@example.org", 404)


def test_trailers_are_shown(web, tmp_path):
    store(web, REVISIONS / "errata-1319367-v1.mbox")
    store(web, REVISIONS / "errata-1319367-v2.mbox")
    client = client_for(web)
    v2 = text(client, "/series/20191019095521.31722-1-maz@kernel.org")
    assert re.search(r"<li>Acked-by: [^<]+ <span class=\"muted\">\(given to v1\)</span>", v2)
    assert "Reviewed-by: " in v2


def _series_id(cfg, mid):
    return rows(cfg, Series, Series.message_id == mid)[0].id


def test_draft_edit_approve_discard_and_history(web):
    store(web, THREADS / "polarity-drop-fb-thread.mbox")
    client = client_for(web)
    d = rows(web, Draft)[0]
    page = text(client, "/drafts/%d" % d.id)
    assert "Approve as %s" % MAINT in page and "Send now" not in page
    body = d.body + "\nAnd one more thing.\n"
    r = post(client, "/drafts/%d/edit" % d.id, {
        "body": body, "subject": d.subject, "to": ", ".join(d.to_addrs),
        "cc": "\n".join(d.cc_addrs), "version": str(d.version)}, page="/drafts/%d" % d.id)
    assert r.status_code == 303 and r.location == "/drafts/%d" % d.id
    (after,) = rows(web, Draft, Draft.id == d.id)
    assert after.body == body and after.state is DraftState.DRAFT
    # A stale version (the form of before the edit) is refused, not applied.
    r = post(client, "/drafts/%d/approve" % d.id, {"version": str(d.version)},
             page="/drafts/%d" % d.id)
    assert "changed since it was read" in text(client, "/drafts/%d" % d.id)
    r = post(client, "/drafts/%d/approve" % d.id, {"version": str(after.version)},
             page="/drafts/%d" % d.id)
    (after,) = rows(web, Draft, Draft.id == d.id)
    assert after.state is DraftState.APPROVED
    assert after.approved_by == "Marc Maint <%s>" % MAINT
    page = text(client, "/drafts/%d" % d.id)
    assert "Approved by Marc Maint &lt;maint@example.org&gt;" in page
    history = page[page.index("<h2>History</h2>"):]
    assert [a for a in ("created", "edited", "approved") if "<td>%s</td>" % a in history] == [
        "created", "edited", "approved"]
    assert history.count("Marc Maint &lt;maint@example.org&gt;") == 2
    assert "+And one more thing." in history  # the edit's change, kept in the history
    r = post(client, "/drafts/%d/discard" % d.id, {"version": str(after.version),
                                                   "reason": "said on the list already"},
             page="/drafts/%d" % d.id)
    (after,) = rows(web, Draft, Draft.id == d.id)
    assert after.state is DraftState.DISCARDED
    page = text(client, "/drafts/%d" % d.id)
    assert "said on the list already" in page and "Approve as" not in page
    assert text(client, "/drafts/999999", 404)


def test_send_only_when_sending_is_enabled(web, smtp_server):
    store(web, THREADS / "polarity-drop-fb-thread.mbox")
    client = client_for(web)
    d = rows(web, Draft)[0]
    post(client, "/drafts/%d/approve" % d.id, {"version": str(d.version)},
         page="/drafts/%d" % d.id)
    page = text(client, "/drafts/%d" % d.id)
    assert "Send now" not in page
    post(client, "/drafts/%d/send" % d.id, page="/drafts/%d" % d.id)
    assert "Sending is disabled" in text(client, "/drafts/%d" % d.id)
    assert smtp_server.received == []
    import dataclasses
    sending = dataclasses.replace(web, smtp=dataclasses.replace(
        web.smtp, send_enabled=True, host="127.0.0.1", port=smtp_server.port, timeout=10.0))
    client = client_for(sending)
    assert "Send now" in text(client, "/drafts/%d" % d.id)
    post(client, "/drafts/%d/send" % d.id, page="/drafts/%d" % d.id)
    smtp_server.wait_for(1)
    assert len(smtp_server.received) == 1
    (after,) = rows(web, Draft, Draft.id == d.id)
    assert after.state is DraftState.SENT
    assert "Sent: 250" in text(client, "/drafts/%d" % d.id)


def test_dismissing_asks_a_reason_changes_precision_and_carries_to_the_next_revision(
        web, tmp_path):
    v1_file, v2_file = split(CONSTRUCTED, tmp_path)
    store(web, v1_file)
    client = client_for(web)
    (width,) = rows(web, Finding, Finding.series_id == _series_id(web, C_V1))
    rules = client.get("/api/rules").json["rules"]
    before = {r["id"]: r for r in rules}[width.rule]
    assert before["fired"] >= 1 and before["precision"] == 1.0
    r = post(client, "/findings/%d/dismiss" % width.id, {"reason": "   "},
             page="/series/" + C_V1)
    assert r.status_code == 303 and r.location.endswith("#finding-%d" % width.id)
    assert "say why it is false" in text(client, "/series/" + C_V1)
    assert rows(web, Finding, Finding.id == width.id)[0].status is FindingStatus.OPEN
    post(client, "/findings/%d/dismiss" % width.id,
         {"reason": "the immediate is built with GENMASK, it fits"}, page="/series/" + C_V1)
    assert rows(web, Finding, Finding.id == width.id)[0].status is FindingStatus.DISMISSED
    after = {r["id"]: r for r in client.get("/api/rules").json["rules"]}[width.rule]
    assert after["dismissed"] == before["dismissed"] + 1
    assert after["precision"] < before["precision"]
    page = text(client, "/rules/" + width.rule)
    assert "the immediate is built with GENMASK, it fits" in page
    assert "Marc Maint &lt;maint@example.org&gt;" in page
    # Dismissing twice is refused.
    post(client, "/findings/%d/dismiss" % width.id, {"reason": "again"},
         page="/series/" + C_V1)
    assert "dismissed already" in text(client, "/series/" + C_V1)
    # The next revision: the same finding arrives dismissed and is not drafted.
    store(web, v2_file)
    v2_id = _series_id(web, C_V2)
    carried = [f for f in rows(web, Finding, Finding.series_id == v2_id)
               if f.rule == width.rule]
    assert [f.status for f in carried] == [FindingStatus.DISMISSED]
    assert all(carried[0].fingerprint not in d.fingerprints
               for d in rows(web, Draft, Draft.series_id == v2_id))
    page = text(client, "/series/" + C_V2)
    diff, apart = page.split('class="apart dismissed"', 1)[0], page.split(
        'class="apart dismissed"', 1)[1]
    assert 'id="finding-%d"' % carried[0].id not in diff
    assert 'id="finding-%d"' % carried[0].id in apart
    assert "the immediate is built with GENMASK, it fits" in apart
    # Counted once over both revisions.
    again = {r["id"]: r for r in client.get("/api/rules").json["rules"]}[width.rule]
    assert again["dismissed"] == after["dismissed"] and again["fired"] == after["fired"]
    assert re.search(r'id="rule-%s">.*?class="num precision">\d+%%' % re.escape(width.rule),
                     text(client, "/rules"), re.S)


def test_confirming_a_finding(web, tmp_path):
    v1_file, _ = split(CONSTRUCTED, tmp_path)
    store(web, v1_file)
    client = client_for(web)
    (width,) = rows(web, Finding, Finding.series_id == _series_id(web, C_V1))
    post(client, "/findings/%d/confirm" % width.id, page="/series/" + C_V1)
    fig = {r["id"]: r for r in client.get("/api/rules").json["rules"]}[width.rule]
    assert fig["confirmed"] == 1 and fig["precision"] == 1.0
    assert "Confirmed by Marc Maint" in text(client, "/series/" + C_V1)


def test_status_page_and_the_quarantine(web):
    client = client_for(web)
    assert "No poller has run" in text(client, "/status")
    assert client.get("/healthz").json == {"ok": True, "database": "ok", "poller": None}
    database = Database(web)
    good = (THREADS / "missing-patches-autosel.mbox").read_bytes()
    try:
        with database.transaction() as s:
            now = utcnow()
            record_started(s, command="daemon", pid=4242, host="kvm-bot", started_at=now)
            record_poll_ended(s, when=now, result=PollResult.FAILED,
                              error="lore unavailable: 503 <b>Service</b>", messages=0,
                              series=0, next_poll_at=None)
            s.add(Quarantine(digest="a" * 64, message_id=None, origin="test",
                             reason="no Message-ID", raw=b"Subject: <b>x</b>\n\nno id\n",
                             created_at=now))
            mid = re.search(rb"^Message-I[Dd]: <([^>]+)>", good, re.M).group(1).decode()
            s.add(Quarantine(digest="b" * 64, message_id=mid, origin="test",
                             reason="pipeline failed: a bug since fixed", raw=good,
                             created_at=now))
    finally:
        database.close()
    page = text(client, "/status")
    assert "PID 4242 on kvm-bot" in page and "lore unavailable: 503 &lt;b&gt;Service" in page
    assert "Quarantine (2)" in page and "a bug since fixed" in page
    items = {q.digest[0]: q.id for q in rows(web, Quarantine)}
    assert "Subject: &lt;b&gt;x&lt;/b&gt;" in text(client, "/status/quarantine/%d" % items["a"])
    r = post(client, "/status/quarantine/%d/reprocess" % items["b"],
             page="/status/quarantine/%d" % items["b"])
    assert r.status_code == 303 and r.location == "/status"
    assert [q.digest[0] for q in rows(web, Quarantine)] == ["a"]
    assert "left the quarantine" in text(client, "/status")
    r = post(client, "/status/quarantine/%d/reprocess" % items["a"],
             page="/status/quarantine/%d" % items["a"])
    assert r.location == "/status/quarantine/%d" % items["a"]
    assert len(rows(web, Quarantine)) == 1
    health = client.get("/healthz").json
    assert health["ok"] and health["poller"]["healthy"] is False
    status = client.get("/api/status").json
    assert status["quarantined"] == 1 and status["status"]["pid"] == 4242


def test_api_documented_endpoints(web):
    store(web, THREADS / "polarity-drop-fb-thread.mbox")
    client = client_for(web)
    series = client.get("/api/series?state=all").json["series"]
    mid = series[0]["message_id"]
    one = client.get("/api/series/" + mid).json
    assert one["message_id"] == mid and one["revisions"] and "findings" in one
    assert one["lore"].endswith("/%s/" % mid)
    drafts = client.get("/api/drafts").json["drafts"]
    assert drafts and all(d["state"] == "draft" for d in drafts)
    assert client.get("/api/drafts?state=sent").json["drafts"] == []
    assert client.get("/api/drafts?state=bogus").status_code == 400
    d = client.get("/api/drafts/%d" % drafts[0]["id"]).json
    assert d["history"][0]["action"] == "created"
    assert client.get("/api/drafts/999999").status_code == 404
    assert client.get("/api/findings?status=bogus").status_code == 400
    assert client.get("/api/findings?series=" + mid).json["findings"]
    assert client.get("/api/series/nope@example.org").status_code == 404
    assert client.get("/api/rules").json["rules"]
