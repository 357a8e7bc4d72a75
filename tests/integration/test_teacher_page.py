"""The teacher's live class page in a real headless Chromium, against the real pipeline.

One pipeline run for the module: the simulator sends a small district through Kafka, a worker process and
the Redis sink process write presence, and ``csync teacher-api`` (a process, as deployed) serves the page.
The checks then drive the page as a teacher would: sign in with the keyboard, open a class, compare every
tile with the simulator's ground truth, watch a tile follow an app switch, survive an API restart, get
signed out by a revocation, meet the same 403 page for any class not theirs, and meet "monitoring is off"
from an API whose hours are closed (and whose Redis address is closed too, so a read would fail).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, expect

from csync import stack as local_stack
from csync.redis_client import redis_client
from csync.settings import Settings
from privacy.teacher_tokens import issue_token, revoke_teacher
from privacy.teacher_web import page_invitation
from producers.simulator import SendOptions
from producers.simulator_model import SimulationConfig, Student
from tests.browser import artifact, chromium
from tests.integration.e2e_harness import (
    Pipeline,
    expected_presence,
    say,
    truth_of,
)
from tests.integration.page_harness import (
    ApiProc,
    Link,
    page_settings,
    produce,
    redis_sink_caught_up,
    teacher_api,
)

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
]

XSS = "<img src=x onerror=alert(1)>"
CONFIG = SimulationConfig(seed=11, districts=1, schools_per_district=1, classes_per_school=2,
                          students_per_class=14, classes_per_student=1)  # fmt: skip
ALWAYS = {"monitoring_days": "mon-sun", "monitoring_hours": "00:00-24:00"}
SIZES = {"desktop": (1440, 900), "chromebook": (1366, 768), "phone": (390, 844)}


@dataclass
class World:
    settings: Settings
    pipeline: Pipeline
    population: list[Student]
    expected: dict[tuple[str, str], dict[str, str]]  # (district, student) → truth's Redis hash
    class_a: str
    class_b: str
    api: ApiProc
    closed_api: ApiProc  # monitoring closed for class_a, Redis address closed
    tokens: Path
    token: dict[str, str]  # teacher id → token
    browser: Browser
    audit: Path
    closed_audit: Path
    times: dict[str, float] = field(default_factory=dict)

    def members(self, class_id: str) -> list[tuple[str, str]]:
        keys = [(s.district_id, s.student_id) for s in self.population if class_id in s.classes]
        if class_id == self.class_a:
            keys.append((self.population[0].district_id, "xss-1"))
        return keys


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    local_services: local_stack.Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("teacher-page")
    settings = page_settings(local_services, root)
    pipeline = Pipeline(settings, root / "pipeline")
    await pipeline.create_topics()
    pipeline.start_worker(0)
    pipeline.start_redis_sink()
    apis: list[ApiProc] = []
    try:
        report, population = await pipeline.simulate(
            CONFIG, SendOptions(count=1500, speed=0, rate=2000)
        )
        district = population[0].district_id
        classes = sorted({c for s in population for c in s.classes})
        class_a, class_b = classes[0], classes[1]
        # A rostered student with a hostile name and no event yet: shown as text, "no activity today".
        await produce(settings, settings.topic_roster, f"{district}:xss-1",
                       {"name": XSS, "classes": [class_a]})  # fmt: skip
        started = time.monotonic()
        await pipeline.wait_worker_caught_up(120)
        await pipeline.wait_for("the Redis sink", lambda: redis_sink_caught_up(pipeline), 120)
        say(f"pipeline caught up in {time.monotonic() - started:.1f}s")
        expected = expected_presence(truth_of(report, settings), population)
        expected[(district, "xss-1")] = {"name": XSS, "online": "0", "app": "", "sub_app": "",
                                         "ts": "0"}  # fmt: skip

        tokens = root / "teacher_tokens.json"
        token = {
            "t1": issue_token(tokens, "t1", district, [class_a]),
            "t2": issue_token(tokens, "t2", district, [class_b]),
            "t3": issue_token(tokens, "t3", district, [class_a]),
        }
        audit, closed_audit = root / "audit.log", root / "audit-closed.log"
        api = teacher_api(settings, root, "teacher-api", teacher_tokens_path=tokens,
                   audit_log_path=audit, **ALWAYS)  # fmt: skip
        tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%a").lower()
        schedule = root / "schedule.json"
        schedule.write_bytes(orjson.dumps({"version": 1, "districts": {district: {
            "days": "mon-sun", "hours": "00:00-24:00",
            "classes": {class_a: [f"{tomorrow} 00:00-24:00"]}}}}))  # fmt: skip
        closed_api = teacher_api(settings, root, "teacher-api-closed", teacher_tokens_path=tokens,
                          audit_log_path=closed_audit, monitoring_schedule_path=schedule,
                          redis_url="redis://127.0.0.1:1/0",
                          teacher_sessions_path=root / "closed-sessions.json")  # fmt: skip
        apis = [api, closed_api]
        for proc in apis:
            proc.start()
        async with chromium() as browser:
            yield World(settings, pipeline, population, expected, class_a, class_b, api,
                        closed_api, tokens, token, browser, audit, closed_audit)  # fmt: skip
    finally:
        for proc in apis:
            proc.stop()
        pipeline.close()


async def _context(world: World, size: str = "chromebook") -> BrowserContext:
    width, height = SIZES[size]
    return await world.browser.new_context(viewport={"width": width, "height": height})


async def _sign_in(page: Page, url: str, secret: str, class_id: str | None = None) -> None:
    """Sign in with the keyboard only: focus lands on the field, Enter submits."""
    await page.goto(url + (f"/#/class/{class_id}" if class_id else "/"))
    await expect(page.get_by_label("Teacher token or one-time sign-in code")).to_be_focused()
    await page.keyboard.type(secret)
    await page.keyboard.press("Enter")
    await expect(page.locator("#who")).to_be_visible()


def _expected_rows(world: World, class_id: str) -> list[tuple[str, str, str]]:
    """(name, state, sub_app) of the class as the page must show it, from the simulator's truth."""
    midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day_start = int(midnight.timestamp() * 1000)
    rows = []
    for key in world.members(class_id):
        h = world.expected[key]
        ts = int(h["ts"])
        state = "online" if h["online"] == "1" else "offline" if ts > 0 and ts >= day_start else (
            "inactive")  # fmt: skip
        rows.append((h["name"], state, h["sub_app"] if state == "online" else ""))
    rows.sort(key=lambda r: (r[1] != "online", r[0].casefold()))
    return rows


async def _tiles(page: Page) -> list[tuple[str, str, str]]:
    tiles: list[dict[str, str]] = await page.locator("#students li").evaluate_all(
        "items => items.map(li => ({name: li.querySelector('.name').textContent,"
        " state: li.dataset.state, sub: li.querySelector('.sub-app').textContent}))"
    )
    return [(t["name"], t["state"], "" if t["sub"] == "—" else t["sub"]) for t in tiles]


async def test_sign_in_open_a_class_and_every_tile_matches_the_truth(world: World) -> None:
    context = await _context(world)
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(world.api.url + "/")
    await expect(page.locator("#sign-in")).to_be_visible()
    await page.screenshot(path=artifact("teacher-sign-in.png"))
    await _sign_in(page, world.api.url, world.token["t1"])
    link = page.get_by_role("link", name=f"Class {world.class_a}")
    await expect(page.get_by_role("link", name=re.compile("^Class "))).to_have_count(1)
    await link.focus()
    await page.keyboard.press("Enter")
    want = _expected_rows(world, world.class_a)
    await expect(page.locator("#students li")).to_have_count(len(want), timeout=10_000)
    assert await _tiles(page) == want
    online = sum(1 for r in want if r[1] == "online")
    await expect(page.locator("#counts")).to_contain_text(f"{online} of {len(want)} online")
    assert {r[1] for r in want} >= {"online", "inactive"}  # both sides of the rule are shown
    # The hostile name is text: no element was made from it, no script ran.
    xss = page.locator("#students li", has_text=XSS)
    await expect(xss).to_have_count(1)
    await expect(xss).to_have_attribute("data-state", "inactive")
    assert await page.locator("#students img").count() == 0
    assert dialogs == [] and not [e for e in errors if "Content Security Policy" in e]
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    for size, (width, height) in SIZES.items():
        await page.set_viewport_size({"width": width, "height": height})
        await page.screenshot(path=artifact(f"teacher-class-{size}.png"), full_page=size == "phone")
    # The browser never held the token: not in the URL, storage, or a script-visible cookie.
    state = await page.evaluate("[location.href, document.cookie, JSON.stringify(localStorage),"
                                " JSON.stringify(sessionStorage)].join(' ')")  # fmt: skip
    assert world.token["t1"] not in state and "csync_session" not in state
    cookie = next(c for c in await context.cookies() if c["name"] == "csync_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    audit = world.audit.read_text()
    assert '"action":"teacher.sign-in"' in audit and '"action":"teacher.page.stream"' in audit
    for secret in (world.token["t1"], *(r[0] for r in want if r[0] != XSS)):
        assert secret not in audit
    await context.close()


async def test_a_tile_follows_an_app_switch_within_two_seconds(world: World) -> None:
    context = await _context(world)
    page = await context.new_page()
    await _sign_in(page, world.api.url, world.token["t1"], world.class_a)
    names = [s.name for s in world.population if world.class_a in s.classes]
    student = next(s for s in world.population
                   if world.class_a in s.classes and names.count(s.name) == 1)  # fmt: skip
    await expect(page.locator("#students li", has_text=student.name)).to_have_count(1)
    redis = redis_client(world.settings)
    key = f"{world.settings.key_prefix}:presence:{student.district_id}:{student.student_id}"
    for n in range(3):
        sub_app = f"live-check-{n}"
        event = {"v": 1, "event_id": uuid.uuid4().hex, "kind": "app_focus",
                 "ts": int(time.time() * 1000), "district_id": student.district_id,
                 "student_id": student.student_id, "device_id": student.devices[0],
                 "app": "math", "sub_app": sub_app}  # fmt: skip
        sent = time.time()
        await produce(world.settings, world.settings.topic_activity,
                       f"{student.district_id}:{student.student_id}", event)  # fmt: skip

        async def redis_changed(want: str = sub_app) -> float:
            while (await redis.hget(key, "sub_app")) != want.encode():
                await asyncio.sleep(0.01)
            return time.time()

        async def page_changed(want: str = sub_app) -> float:
            await page.wait_for_function(
                "([name, want]) => [...document.querySelectorAll('#students li')].some(li =>"
                " li.querySelector('.name').textContent === name && li.dataset.state === 'online'"
                " && li.querySelector('.sub-app').textContent === want)",
                arg=[student.name, want],
                polling="raf",
                timeout=15_000,
            )
            return time.time()

        at_redis, at_page = await asyncio.gather(redis_changed(), page_changed())
        say(f"app switch {n}: Redis after {at_redis - sent:.2f}s, page after {at_page - sent:.2f}s "
            f"({at_page - at_redis:.2f}s after Redis)")  # fmt: skip
        assert at_page - at_redis <= 2.0
        world.times[f"switch{n}"] = at_page - at_redis
    await redis.aclose()
    await context.close()


async def test_the_page_shows_staleness_and_reconnects_after_an_api_restart(world: World) -> None:
    context = await _context(world)
    page = await context.new_page()
    await _sign_in(page, world.api.url, world.token["t1"], world.class_a)
    live = page.locator("#live")
    await expect(live).to_have_attribute("data-state", "live", timeout=10_000)
    world.api.stop()
    await expect(live).to_have_attribute("data-state", "stale", timeout=10_000)
    await expect(live).to_contain_text("Reconnecting")
    world.api.start()
    restarted = time.monotonic()
    await expect(live).to_have_attribute("data-state", "live", timeout=20_000)
    say(f"page live again {time.monotonic() - restarted:.1f}s after the API answered again")
    await expect(page.locator("#sign-in")).to_be_hidden()  # the session outlived the restart
    await expect(page.locator("#students li")).to_have_count(len(world.members(world.class_a)))
    await context.close()


async def test_the_page_shows_staleness_and_reconnects_after_a_network_drop(world: World) -> None:
    link = Link(world.api.port)
    await link.up()
    context = await _context(world)
    page = await context.new_page()
    await _sign_in(page, f"http://127.0.0.1:{link.port}", world.token["t1"], world.class_a)
    live = page.locator("#live")
    await expect(live).to_have_attribute("data-state", "live", timeout=10_000)
    await link.cut()
    dropped = time.monotonic()
    await expect(live).to_have_attribute("data-state", "stale", timeout=20_000)
    say(f"page stale {time.monotonic() - dropped:.1f}s after the network dropped")
    await asyncio.sleep(3)  # a few failed reconnects while the network is down
    await link.up()
    back = time.monotonic()
    await expect(live).to_have_attribute("data-state", "live", timeout=20_000)
    say(f"page live again {time.monotonic() - back:.1f}s after the network came back")
    await expect(page.locator("#sign-in")).to_be_hidden()
    await expect(page.locator("#students li")).to_have_count(len(world.members(world.class_a)))
    await context.close()
    await link.cut()


async def test_revoking_the_token_signs_the_page_out(world: World) -> None:
    context = await _context(world)
    page = await context.new_page()
    await _sign_in(page, world.api.url, world.token["t3"], world.class_a)
    await expect(page.locator("#students li").first).to_be_visible(timeout=10_000)
    revoke_teacher(world.tokens, "t3")
    revoked = time.monotonic()
    await expect(page.locator("#sign-in")).to_be_visible(timeout=10_000)
    await expect(page.locator("#notice")).to_contain_text("session has ended")
    say(f"signed out {time.monotonic() - revoked:.1f}s after the revocation")
    assert (
        await page.locator("#students li").count() == 0 or await page.locator("#class").is_hidden()
    )
    await page.reload()
    await expect(page.locator("#sign-in")).to_be_visible()  # the session is gone for good
    await context.close()


async def test_any_class_not_taught_is_the_same_403_page(world: World) -> None:
    context = await _context(world)
    page = await context.new_page()
    await _sign_in(page, world.api.url, world.token["t1"])
    answers = []
    for cls in (world.class_b, "c-does-not-exist", "no%2Fsuch"):
        await page.goto(f"{world.api.url}/#/class/{cls}")
        await expect(page.locator("#forbidden")).to_be_visible(timeout=10_000)
        await expect(page.locator("#students li")).to_have_count(0)
        answers.append(await page.evaluate(
            "async c => { const r = await fetch('/v1/page/classes/' + c);"
            " return [r.status, await r.text()]; }", cls))  # fmt: skip
    assert [a[0] for a in answers] == [403, 403, 403]
    assert len({a[1] for a in answers}) == 1
    await context.close()


async def test_outside_monitoring_hours_the_page_says_so_and_nothing_is_read(world: World) -> None:
    """The closed API's Redis address is a closed port: a single read would fail the request."""
    context = await _context(world)
    page = await context.new_page()
    await _sign_in(page, world.closed_api.url, world.token["t1"], world.class_a)
    await expect(page.locator("#off")).to_be_visible(timeout=10_000)
    await expect(page.locator("#off")).to_contain_text("Monitoring is off")
    await expect(page.locator("#live")).to_have_text("Monitoring off")  # never "Live" over no one
    await expect(page.locator("#students li")).to_have_count(0)
    await page.screenshot(path=artifact("teacher-class-monitoring-off.png"))
    request = urllib.request.Request(  # noqa: S310 - a local http URL of the test
        f"{world.closed_api.url}/v1/classes/{world.class_a}/presence",
        headers={"Authorization": f"Bearer {world.token['t1']}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert orjson.loads(response.read()) == {"class_id": world.class_a, "monitoring": "off"}
    entries = [orjson.loads(line) for line in world.closed_audit.read_text().splitlines()]
    offs = [e for e in entries if e["status"] == "monitoring-off"]
    assert {e["action"] for e in offs} >= {"teacher.page.stream", "teacher.presence"}
    assert all(e["target"] == f"class:{world.class_a}" for e in offs)
    await context.close()


async def test_the_page_is_served_with_a_strict_policy_and_no_inline_script(world: World) -> None:
    with urllib.request.urlopen(world.api.url + "/", timeout=10) as response:  # noqa: S310
        csp = response.headers["Content-Security-Policy"]
        html = response.read().decode()
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
    assert scripts and all(not body.strip() for body in scripts)  # module by src only
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from another origin


async def test_a_one_time_code_signs_in_once(world: World) -> None:
    """What ``make demo`` prints: the class page's URL without any secret, and a one-time code."""
    line = page_invitation("127.0.0.1", world.api.port, world.token["t2"], world.class_b)
    match = re.fullmatch(r"teacher page: (\S+) — sign in with the one-time code (\S+) \(.*\)", line)
    assert match is not None, line
    url, code = match.groups()
    assert url == f"{world.api.url}/#/class/{world.class_b}" and world.token["t2"] not in line
    context = await _context(world, "phone")
    page = await context.new_page()
    await _sign_in(page, url.split("/#/")[0], code, world.class_b)
    await expect(page.locator("#students li")).to_have_count(len(world.members(world.class_b)))
    await page.screenshot(path=artifact("teacher-class-phone-b.png"), full_page=True)
    other = await context.browser.new_context() if context.browser else None
    assert other is not None
    again = await other.new_page()
    await again.goto(world.api.url + "/")
    await again.get_by_label("Teacher token or one-time sign-in code").fill(code)
    await again.get_by_role("button", name="Sign in").click()
    await expect(again.locator("#sign-in-error")).to_contain_text("not valid")
    await other.close()
    await context.close()
