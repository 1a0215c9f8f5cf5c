"""The agents' chat page in a real browser: Playwright drives headless Chromium (Debian's package)
against the running app; the test saves a screenshot to build/screenshots/chat_page.png."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pandas as pd
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


def _serve(tmp_path_factory, trained_model, synthetic, **overrides):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium "
                    "(.ci/run does this)")
    home = tmp_path_factory.mktemp("web")
    settings = Settings(home=home, model_dir=trained_model, llm_backend="none", rescore_at="",
                        as_of="data", **overrides)
    with db.sessions(db.engine_for(settings.db_url))() as session:
        db.upsert_events(session, synthetic[0][synthetic[0]["customer_id"] < "C00040"])
        key = db.create_key(session, "browser test", "agent")
    port = _free_port()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    server.app_ = app  # the test reaches the running services through it
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return port, key, server, thread


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained_model, synthetic):
    port, key, server, thread = _serve(tmp_path_factory, trained_model, synthetic, holdout=0.0)
    yield port, key
    server.should_exit = True
    thread.join(timeout=10)


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"])


def test_agent_finds_customer_sees_reasons_and_chats(served):
    from playwright.sync_api import expect, sync_playwright

    from service.cli_service import chat_link

    port, key = served
    link = chat_link("127.0.0.1", port, key)  # exactly what `retention demo` prints
    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = _browser(p)
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


def test_holdout_banner_and_done_button(tmp_path_factory, trained_model, synthetic):
    """A holdout customer's page says not to contact them and offers nothing to do; another
    at-risk customer's action is recorded by its "done" button."""
    import httpx
    from playwright.sync_api import expect, sync_playwright

    from assistant.experiment import ExperimentConfig, assign
    from service.cli_service import chat_link

    port, key, server, thread = _serve(tmp_path_factory, trained_model, synthetic, holdout=0.5)
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        as_of = httpx.get(f"{base}/v1/clock", headers=headers).json()["as_of"]
        ids = [f"C{i:05d}" for i in range(1, 40)]
        arms = {}
        for cid in ids:
            res = httpx.get(f"{base}/v1/customers/{cid}/risk", headers=headers, timeout=60)
            if res.status_code == 200:
                arms[cid] = assign(cid, res.json()["probability"],
                                   pd.Timestamp(as_of, tz="UTC"),
                                   ExperimentConfig(holdout=0.5)).arm
        held = next(c for c, a in arms.items() if a == "holdout")
        normal = next(c for c, a in arms.items() if a == "normal")
        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(chat_link("127.0.0.1", port, key))
            for cid in (held, normal):
                page.fill("#q", cid)
                expect(page.locator("#hits div").first).to_contain_text(cid, timeout=30_000)
                page.locator("#hits div").first.click()
                expect(page.locator("#explain li.reason").first).to_be_visible(timeout=60_000)
                if cid == held:
                    expect(page.locator("#holdout")).to_contain_text("do not contact")
                    assert page.locator("button.done").count() == 0
                    page.screenshot(path=str(SHOTS / "holdout.png"), full_page=True)
            expect(page.locator("#holdout")).to_have_count(0)
            button = page.locator("button.done").first
            action = button.get_attribute("data-action")
            button.click()
            expect(button).to_have_text("recorded ✓", timeout=30_000)
            expect(page.locator(".measure").first).to_contain_text("no measurement yet")
            page.screenshot(path=str(SHOTS / "done_button.png"), full_page=True)
            browser.close()
        assert errors == [], errors
        rows = httpx.get(f"{base}/v1/customers/{normal}/actions", headers=headers).json()
        assert [(r["action_id"], r["source"], r["agent"]) for r in rows] == [
            (action, "agent", "browser test")]
        held_rows = httpx.get(f"{base}/v1/customers/{held}/actions", headers=headers).json()
        assert [r["action_id"] for r in held_rows] == ["holdout"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# A measured action as the API sends it (assistant.schema.Measurement): the page words it.
MEASURED = "{uplift_points: 4.1, ci_low_points: -1.2, ci_high_points: 7, n: 1240, expected_points: 3.5}"


def test_deterministic_reasons_come_first_then_the_llms_replace_them(served_llm):
    """The page shows the deterministic reasons while the (scripted, slow) LLM writes, then
    replaces them with its checked wording; Chinese labels when zh is chosen."""
    from playwright.sync_api import expect, sync_playwright

    from service.cli_service import chat_link

    port, key = served_llm
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(chat_link("127.0.0.1", port, key))
        page.fill("#q", "C00002")
        expect(page.locator("#hits div").first).to_contain_text("C00002", timeout=30_000)
        page.locator("#hits div").first.click()
        expect(page.locator("#explain[data-stage=deterministic] li.reason").first
               ).to_be_visible(timeout=60_000)
        expect(page.locator("#pending")).to_be_visible()
        first = page.inner_text("#explain li.reason >> nth=0")
        assert "The LLM notes" not in first
        page.screenshot(path=str(SHOTS / "explain_deterministic.png"), full_page=True)
        expect(page.locator("#explain[data-stage=final]")).to_be_visible(timeout=60_000)
        expect(page.locator("#writer")).to_have_text(
            "Worded by the LLM (scripted) and checked against the records")
        expect(page.locator("#explain li.reason").first).to_contain_text("The LLM notes")
        page.screenshot(path=str(SHOTS / "explain_llm.png"), full_page=True)
        assert page.evaluate(f"measure({MEASURED})") == (
            "measured: +4.1 points retained, 95% CI -1.2 to 7.0, n=1,240; for customers like "
            "this one: +3.5 points expected")
        # The agent's language: every label in Chinese.
        page.select_option("#lang", "zh")
        expect(page.locator("h2").first).to_have_text("客户")
        expect(page.locator("#send")).to_have_text("提问")
        expect(page.locator("#explain[data-stage=final]")).to_be_visible(timeout=120_000)
        expect(page.locator("#explain li.reason").first).to_contain_text("LLM 认为")
        expect(page.locator("#riskbody .band")).to_have_text(re.compile("^[低中高]$"))
        # The action's channel, cost and measurement line too (session 29 found them in English).
        expect(page.locator("#explain .measure").first).to_contain_text("尚无测量结果")
        action = page.inner_text("#explain li.action >> nth=0")
        assert not re.search(r"\((?:email|phone|sms|in_app|support),|no measurement", action), action
        # A measured action is worded from the API's numbers, in the agent's language: the same
        # figures as the English line the API keeps (finetune.uplift.ActionEffect.label).
        assert page.evaluate(f"measure({MEASURED})") == (
            "已测量：留存 +4.1 个百分点，95% 置信区间 -1.2 至 7.0，n=1,240；对与此类似的客户：预计 +3.5 个百分点")
        page.screenshot(path=str(SHOTS / "explain_zh.png"), full_page=True)
        browser.close()
    assert errors == [], errors


@pytest.fixture(scope="module")
def served_llm(tmp_path_factory, trained_model, synthetic):
    from tests.assistant.fakes import ScriptedChat, grounded_reply

    def slow(messages):
        time.sleep(2.0)
        zh = "证据" in str(messages[-1].content)
        if zh:
            return grounded_reply(messages, prefix="LLM 认为", why="这符合客户的情况。")
        return grounded_reply(messages, prefix="The LLM notes")

    port, key, server, thread = _serve(tmp_path_factory, trained_model, synthetic, holdout=0.0)
    helper = server.app_.state.services.assistant
    helper.llm, helper.backend = ScriptedChat(slow), "scripted"
    yield port, key
    server.should_exit = True
    thread.join(timeout=10)
