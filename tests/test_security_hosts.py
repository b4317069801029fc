"""The served app's front door without logins (fake backends, real Gradio server, real HTTP): which Host
names and origins it answers, what every answer carries, the default rate limit once it is reachable from
other machines, and the upload cap.

DNS rebinding is the attack here: a page on the attacker's domain, re-pointed at 127.0.0.1, sends
`Host: evil.example` (and its own Origin); the first version answered it with `/config` and stored prompts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from studio.service import Studio
from tests.conftest import FAKE_MODELS
from tests.helpers.net import free_port
from tests.helpers.served import serving, studio_at

SECRET = "the launch codes are 0000"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, str]]:
    studio = studio_at(tmp_path_factory.mktemp("hosts"), FAKE_MODELS)
    studio.settings = dataclasses.replace(
        studio.settings,
        allowed_hosts=frozenset({"studio.example.com", "*.corp.example"}),
        allowed_origins=frozenset({"studio.example.com"}),
    )
    *_, final = studio.chat(model_id="fake", message=SECRET)  # the one local user's stored prompt
    assert final.status == "ok"
    try:
        with serving(studio) as server:
            yield studio, server.url.rstrip("/")
    finally:
        studio.close()


def library_answer(client: httpx.Client, headers: dict[str, str]) -> tuple[int, str]:
    """The Library listing through the API, as a rebinding page would fetch it: (status, everything read)."""
    start = client.post("/gradio_api/call/library", json={"data": ["", "", "", "", "", 1]}, headers=headers)
    if start.status_code != 200:
        return start.status_code, start.text
    event = start.json()["event_id"]
    result = client.get(f"/gradio_api/call/library/{event}", headers=headers, timeout=30)
    return result.status_code, result.text


def test_a_foreign_host_name_is_refused_dns_rebinding(local: tuple[Studio, str]) -> None:
    _, url = local
    port = url.rsplit(":", 1)[1]
    with httpx.Client(base_url=url, timeout=30) as client:
        for host in [
            "evil.example",
            f"evil.example:{port}",
            "studio.example.com.evil.example",
            "127.0.0.1.nip.io",
        ]:
            headers = {"Host": host, "Origin": f"http://{host}"}
            reply = client.get("/config", headers=headers)
            assert reply.status_code == 400 and "unknown host" in reply.text, host
            status, text = library_answer(client, headers)
            assert status == 400 and SECRET not in text, host
            assert client.get("/", headers=headers).status_code == 400
        # Its own names still answer, with the stored prompt for the local user.
        for host in [f"127.0.0.1:{port}", f"localhost:{port}", "studio.example.com", "a.corp.example"]:
            assert client.get("/config", headers={"Host": host}).status_code == 200, host
        status, text = library_answer(client, {})
        assert status == 200 and SECRET in text


def test_allowed_and_refused_origins(local: tuple[Studio, str]) -> None:
    _, url = local
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/config", headers={"Origin": url}).status_code == 200  # the page itself
        assert client.get("/config", headers={"Origin": "https://studio.example.com"}).status_code == 200
        for origin in ["http://evil.example", "null", "https://studio.example.com.evil.example", "file://"]:
            assert client.get("/config", headers={"Origin": origin}).status_code == 403, origin
            assert (
                client.post("/gradio_api/queue/join", json={}, headers={"Origin": origin}).status_code == 403
            )


def test_every_answer_refuses_to_be_framed(local: tuple[Studio, str]) -> None:
    _, url = local
    for path in ["/", "/config", "/gradio_api/info", "/nope"]:
        reply = httpx.get(url + path, timeout=30)
        assert reply.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"], path
    refused = httpx.get(url + "/config", headers={"Host": "evil.example"}, timeout=30)
    assert refused.headers["x-frame-options"] == "DENY"


def test_uploads_above_25_mb_are_refused(local: tuple[Studio, str]) -> None:
    _, url = local
    with httpx.Client(base_url=url, timeout=60) as client:
        small = client.post("/gradio_api/upload", files={"files": ("ok.bin", b"x" * (24 * 2**20))})
        assert small.status_code == 200 and len(small.json()) == 1
        big = client.post("/gradio_api/upload", files={"files": ("big.bin", b"x" * (26 * 2**20))})
        assert big.status_code == 413, (big.status_code, big.text[:200])


def test_one_local_user_has_no_rate_limit(local: tuple[Studio, str]) -> None:
    _, url = local
    with httpx.Client(base_url=url, timeout=30) as client:
        codes = [client.post("/gradio_api/queue/join", json={}).status_code for _ in range(80)]
    assert 429 not in codes


def test_an_exposed_server_has_the_default_rate_limit(tmp_path: Path) -> None:
    """Bound beyond 127.0.0.1 (here 127.0.0.2, still this machine): 120 events a minute per address,
    bursts of 60, with no STUDIO_RATE_LIMIT set."""
    studio = studio_at(tmp_path, FAKE_MODELS)
    from studio.ui import build_app, launch

    app = build_app(studio)
    port = free_port()
    try:
        launch(app, studio, host="127.0.0.2", port=port, block=False)
        with httpx.Client(base_url=f"http://127.0.0.2:{port}", timeout=30) as client:
            started = time.monotonic()
            codes = [client.post("/gradio_api/queue/join", json={}).status_code for _ in range(80)]
            took = time.monotonic() - started
            assert 429 in codes, codes
            first = codes.index(429)
            assert 60 <= first <= 60 + 2 * took + 1, (first, took)  # the burst, plus 2 a second refilled
            limited = client.post("/gradio_api/queue/join", json={})
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    finally:
        app.close()
        studio.close()


def test_a_server_on_every_interface_answers_its_addresses_and_name_not_other_names() -> None:
    import socket

    from studio.security.headers import HostCheck

    listen = HostCheck.for_server("0.0.0.0", frozenset(), frozenset())
    for host in ["10.0.0.7:7860", "[fe80::1]:7860", "127.0.0.1", f"{socket.gethostname()}:7860", "localhost"]:
        assert listen.allows(host), host
    for host in ["evil.example", "10.0.0.7.nip.io", "", None, "a@b", "host:notaport"]:
        assert not listen.allows(host), host
    local = HostCheck.for_server("127.0.0.1", frozenset(), frozenset())
    assert not local.allows("10.0.0.7:7860") and local.allows("127.0.0.5:7860")  # loopback only
    local.add_url("https://0123abcd.gradio.live")  # the share link, once Gradio made it
    assert local.allows("0123abcd.gradio.live") and not local.allows("other.gradio.live")
