"""The fake's web page over the wire: who may see it (token, cookie, one-time link), its JSON, and escaping."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fake_stream_proxy import FakeServer
from fake_stream_proxy.ui.handlers import COOKIE
from fake_stream_proxy.ui.sessions import Sessions
from tests.conftest import Admin
from tests.fake.dataset_helpers import ds, upload
from tests.fake.stream_helpers import PREVIEW, make_stream, publish, sub, v2

pytestmark = pytest.mark.timeout(60)

PAGE_JSON = ("/_fake/ui/overview", "/_fake/ui/live", "/_fake/ui/streams/ri.x", "/_fake/ui/datasets/ri.x")


@pytest.fixture
async def browser(fake: FakeServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A client without the admin token that keeps cookies, as a browser would (127.0.0.1 included)."""
    async with aiohttp.ClientSession(fake.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def log_in(browser: aiohttp.ClientSession, token: str) -> aiohttp.ClientResponse:
    async with browser.post("/_fake/ui/login", data={"token": token}, allow_redirects=False) as resp:
        await resp.read()
        return resp


async def text(browser: aiohttp.ClientSession, path: str, **kwargs: Any) -> tuple[int, str]:
    async with browser.get(path, allow_redirects=False, **kwargs) as resp:
        return resp.status, await resp.text()


async def test_without_a_session_the_page_is_only_the_login_form_and_the_json_is_401(
    admin: Admin, browser: aiohttp.ClientSession
) -> None:
    await make_stream(admin, "secret-stream")
    status, body = await text(browser, "/")
    assert status == 401
    assert 'action="/_fake/ui/login"' in body and 'name="token"' in body
    assert "secret-stream" not in body and "Lineage" not in body
    for path in PAGE_JSON:
        async with browser.get(path) as resp:
            assert resp.status == 401, path
            assert (await resp.json())["errorName"] == "Default:Unauthorized"


async def test_a_wrong_token_shows_the_form_again_and_sets_no_cookie(browser: aiohttp.ClientSession) -> None:
    resp = await log_in(browser, "not-the-token")
    assert resp.status == 401 and COOKIE not in resp.cookies
    status, body = await text(browser, "/")
    assert status == 401 and 'name="token"' in body
    async with browser.post("/_fake/ui/login", data={"token": "nope"}) as again:
        assert "Wrong admin token" in await again.text()


async def test_the_admin_token_gives_an_httponly_strict_session_cookie_that_is_not_the_token(
    fake: FakeServer, admin: Admin, browser: aiohttp.ClientSession
) -> None:
    await make_stream(admin, "visible-stream")
    resp = await log_in(browser, fake.admin_token)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    cookie = resp.cookies[COOKIE]
    assert cookie.value and fake.admin_token not in cookie.value
    assert cookie["httponly"] is True and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    status, body = await text(browser, "/")
    assert status == 200 and "Lineage" in body and "visible-stream" in body
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    async with browser.get("/_fake/ui/overview") as overview:
        assert overview.status == 200
        assert [r["name"] for r in (await overview.json())["resources"]] == ["visible-stream"]

    async with browser.post("/_fake/ui/logout", allow_redirects=False) as out:
        assert out.status == 303
    assert (await text(browser, "/"))[0] == 401
    async with browser.get("/_fake/ui/live", cookies={COOKIE: cookie.value}) as stale:
        assert stale.status == 401, "a logged-out session id is dead even if a client kept it"


async def test_bearer_tokens_admin_sees_the_json_a_job_token_is_forbidden(fake: FakeServer, admin: Admin) -> None:
    stream = await make_stream(admin, "s")
    job = await admin.job(inputs={"in": stream["rid"]}, outputs={})
    assert (await admin.call("GET", "/_fake/ui/overview"))[0] == 200
    status, body = await admin.call("GET", "/_fake/ui/overview", job["token"])
    assert status == 403, body
    status, body = await admin.call("GET", "/_fake/ui/overview", "unknown")
    assert status == 401, body


async def test_a_one_time_link_logs_in_once(fake: FakeServer, admin: Admin, browser: aiohttp.ClientSession) -> None:
    status, link = await admin.call("POST", "/_fake/ui/links")
    assert status == 200 and link["url"] == f"{fake.url}/?login={link['code']}"
    assert (await admin.call("POST", "/_fake/ui/links", "not-admin"))[0] == 401
    async with browser.get(f"/?login={link['code']}", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/" and COOKIE in resp.cookies
    assert (await text(browser, "/"))[0] == 200
    async with aiohttp.ClientSession(fake.url) as other:
        status, body = await text(other, f"/?login={link['code']}")
        assert status == 401 and "used already" in body


async def test_record_values_and_names_are_escaped(
    fake: FakeServer, admin: Admin, browser: aiohttp.ClientSession
) -> None:
    stream = await make_stream(admin, "<b>bold</b>", schema=None)
    evil = "<script>alert('x')</script>"
    status, _ = await publish(admin, stream["rid"], [{"note": evil, "q": '"><img src=x onerror=alert(1)>'}])
    assert status == 204
    await log_in(browser, fake.admin_token)
    for path in (f"/?stream={stream['rid']}", "/"):
        status, body = await text(browser, path)
        assert status == 200
        assert "<script>alert" not in body and "<b>bold</b>" not in body and "<img" not in body
        assert "&lt;b&gt;bold&lt;/b&gt;" in body
    status, body = await text(browser, f"/?stream={stream['rid']}")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body
    async with browser.get("/_fake/ui/live", params={"stream": stream["rid"]}) as resp:
        sections = (await resp.json())["sections"]
        assert "&lt;script&gt;" in sections["stream"] and "<script>" not in sections["stream"]


async def test_stream_json_has_end_offsets_latest_records_and_subscriber_lag(admin: Admin) -> None:
    stream = await make_stream(admin, "s", partitions=2)
    rid = stream["rid"]
    assert (await publish(admin, rid, [{"id": i, "name": f"n{i}"} for i in range(10)]))[0] == 204
    path = v2(rid, suffix="/subscribers")
    assert (await admin.call("POST", path, params=PREVIEW, json={"subscriberId": "reader"}))[0] == 200
    body = {"offsets": {"0": 1}}
    assert (await admin.call("POST", sub(rid, "reader", "commitOffsets"), params=PREVIEW, json=body))[0] == 200

    status, found = await admin.call("GET", f"/_fake/ui/streams/{rid}", params={"latest": "3"})
    assert status == 200, found
    assert found["name"] == "s" and found["totalRecords"] == 10 and found["endOffsets"] == {"0": 5, "1": 5}
    assert [[r["offset"] for r in p["latest"]] for p in found["partitionDetails"]] == [[2, 3, 4], [2, 3, 4]]
    assert found["partitionDetails"][0]["latest"][0]["value"] == {"id": 4, "name": "n4"}
    (reader,) = found["subscriberDetails"]
    assert reader["positions"] == {"0": 2, "1": 0} and reader["lagByPartition"] == {"0": 3, "1": 5}
    assert reader["lag"] == 8 and found["maxLag"] == 8
    assert (await admin.call("GET", f"/_fake/ui/streams/{rid}", params={"latest": "0"}))[0] == 400
    assert (await admin.call("GET", "/_fake/ui/streams/ri.nope"))[0] == 404


async def test_overview_lineage_counts_a_jobs_writes_and_the_page_reads_record_nothing(admin: Admin) -> None:
    source, target = await make_stream(admin, "source"), await make_stream(admin, "target")
    job = await admin.job(inputs={"in": source["rid"]}, outputs={"out": target["rid"]})
    records = [{"id": i, "name": "x"} for i in range(7)]
    assert (await publish(admin, target["rid"], records, job["token"]))[0] == 204
    for path in ("/_fake/ui/overview", f"/_fake/ui/streams/{target['rid']}"):
        assert (await admin.call("GET", path))[0] == 200
    status, overview = await admin.call("GET", "/_fake/ui/overview")
    edges = {(e["direction"], e["name"]): e for e in overview["edges"]}
    assert edges["output", "target"]["records"] == 7 and edges["input", "source"]["records"] == 0
    assert edges["output", "target"]["lastTime"] is not None
    assert {s["name"]: s["totalRecords"] for s in overview["streams"]} == {"source": 0, "target": 7}
    assert overview["runtimes"] == [] and len(overview["jobs"]) == 1
    status, everything = await admin.call("GET", "/_fake/provenance")
    assert len(everything["events"]) == 1, "looking at the page records no read"
    status, page = await admin.call("GET", "/")
    assert status == 200 and "7 records" in page.decode()


async def test_dataset_json_has_transactions_files_and_first_rows(admin: Admin) -> None:
    rid = (await admin.create("dataset", "people"))["rid"]
    await upload(admin, rid, "people.csv", b"id,name\n1,ada\n2,<grace>\n", transactionType="SNAPSHOT")
    status, found = await admin.call("GET", f"/_fake/ui/datasets/{rid}")
    assert status == 200, found
    assert found["name"] == "people" and found["branches"] == ["master"]
    assert [t["status"] for t in found["transactions"]] == ["COMMITTED"]
    assert [f["path"] for f in found["files"]] == ["people.csv"]
    assert found["table"]["columns"] == ["id", "name"]
    assert found["table"]["rows"] == [{"id": 1, "name": "ada"}, {"id": 2, "name": "<grace>"}]
    status, page = await admin.call("GET", "/", params={"dataset": rid})
    assert "&lt;grace&gt;" in page.decode() and "<grace>" not in page.decode()
    assert (await admin.call("GET", ds(rid)))[0] == 200
    assert (await admin.call("GET", "/_fake/ui/datasets/ri.nope"))[0] == 404


async def test_unknown_selection_says_not_found_and_static_files_are_served(
    admin: Admin, browser: aiohttp.ClientSession
) -> None:
    status, page = await admin.call("GET", "/", params={"stream": "ri.missing"})
    assert status == 200 and "StreamNotFound" in page.decode()
    async with browser.get("/_fake/ui/static/app.js") as resp:
        assert resp.status == 200 and "/_fake/ui/live" in await resp.text()
    async with browser.get("/_fake/ui/static/app.css") as resp:
        assert resp.status == 200 and resp.content_type == "text/css"
    async with browser.get("/_fake/ui/static/secret.py") as resp:
        assert resp.status == 404


def test_sessions_and_codes_expire_and_codes_are_spent() -> None:
    now = [0.0]
    sessions = Sessions("tok", clock=lambda: now[0])
    assert sessions.login("wrong") is None and sessions.login("") is None
    session = sessions.login("tok")
    assert session and sessions.valid(session) and not sessions.valid(None)
    code = sessions.new_code()
    now[0] += 11 * 60
    assert sessions.redeem(code) is None, "codes last 10 minutes"
    assert sessions.redeem(sessions.new_code()) is not None
    fresh = sessions.new_code()
    assert sessions.redeem(fresh) and sessions.redeem(fresh) is None
    now[0] += 13 * 3600
    assert not sessions.valid(session), "sessions last 12 hours"


async def test_serve_prints_the_web_page_last_and_it_answers_with_the_login_form(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fake_stream_proxy", "serve", "--port", "0", "--no-https",
        "--state-dir", str(tmp_path / "s"), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        printed = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode() for _ in range(3)]
        assert printed[0].startswith("fake-stream-proxy listening on ") and printed[1].startswith("admin token: ")
        match = re.fullmatch(r"web page: (http://127\.0\.0\.1:\d+/) \(log in with the admin token\)\n", printed[2])
        assert match, printed
        async with aiohttp.ClientSession() as session, session.get(match.group(1)) as resp:
            assert resp.status == 401 and 'name="token"' in await resp.text()
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 15)
