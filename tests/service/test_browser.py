"""The agents' chat page in a real browser: Playwright drives headless Chromium (Debian's package)
against the running app; the test saves a screenshot to build/screenshots/chat_page.png."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from service import db
from service.api.app import create_app
from service.settings import Settings

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained_model, synthetic):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium "
                    "(.ci/run does this)")
    home = tmp_path_factory.mktemp("web")
    settings = Settings(home=home, model_dir=trained_model, llm_backend="none", rescore_at="",
                        as_of="data")
    with db.sessions(db.engine_for(settings.db_url))() as session:
        db.upsert_events(session, synthetic[0][synthetic[0]["customer_id"] < "C00020"])
        key = db.create_key(session, "browser test", "agent")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield port, key
    server.should_exit = True
    thread.join(timeout=10)


def test_agent_finds_customer_sees_reasons_and_chats(served):
    from playwright.sync_api import expect, sync_playwright

    from service.cli_service import chat_link

    port, key = served
    link = chat_link("127.0.0.1", port, key)  # exactly what `retention demo` prints
    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(link)
        # The key was read from the address, which no longer shows it.
        expect(page.locator("#hits div").first).to_be_visible(timeout=30_000)
        assert page.input_value("#key") == key and "key=" not in page.url
        page.fill("#q", "C0000")
        first = page.locator("#hits div").first
        expect(first).to_be_visible(timeout=30_000)
        first.click()
        expect(page.locator("#riskbody .band")).to_be_visible(timeout=60_000)
        expect(page.locator("#explain li.reason").first).to_be_visible(timeout=60_000)
        expect(page.locator("#timeline .ev").first).to_be_visible()
        page.locator("#explain li.reason").first.click()
        page.fill("#question", "What did they complain about?")
        page.click("#send")
        expect(page.locator("#log .msg.bot")).to_contain_text("[", timeout=60_000)
        page.screenshot(path=str(SHOTS / "chat_page.png"), full_page=True)
        risk = page.inner_text("#riskbody")
        assert "%" in risk and "as of 2025-06-" in risk  # the data clock: the day after the data
        browser.close()
    assert errors == [], errors
