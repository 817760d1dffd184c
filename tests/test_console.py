"""The console at /ui and the docs at /docs, in a real browser: headless Chromium from Debian's packages, driven
by Selenium through the system chromedriver (no browser download, no Selenium Manager).

Chromium is given a proxy that leads nowhere for every address but loopback, so a page that reached for a
CDN would break here, as it would in an air-gapped cluster. Screenshots land in tests/results/console/.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from stan_api.schedule_words import describe

from .conftest import PROJECT_ROOT, FacadeProcess, Tenant

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]
RESULTS = PROJECT_ROOT / "tests" / "results" / "console"
DESKTOP = (1440, 1000)
PHONE_WIDTH = 390
WAIT_SECONDS = 30
TABLE_TASKS = 200
T = TypeVar("T")


def _chromium_installed() -> None:
    """Debian's Chromium and chromedriver: installed here when running as root, else the exact command."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"headless Chromium is missing: install Debian's packages with `sudo {' '.join(INSTALL)}`")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment)
    subprocess.run(INSTALL, check=True, env=environment)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    _chromium_installed()
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
        "--no-first-run",
        "--disable-sync",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>;127.0.0.1",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def until(driver: WebDriver, condition: Callable[[WebDriver], T], what: str, timeout: float = WAIT_SECONDS) -> T:
    """Wait for ``condition`` to be truthy; a row re-rendered under our feet is just not there yet. On a
    timeout, the page as it was is saved beside the screenshots."""
    try:
        return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
            condition, message=f"not reached within {timeout}s: {what}"
        )
    except TimeoutException:
        print(f"the page when waiting failed: {screenshot(driver, 'failed')}")
        raise


def screenshot(driver: WebDriver, name: str, width: int = DESKTOP[0]) -> Path:
    """The whole page at ``width`` CSS pixels (a phone's when narrow), as a browser of that size shows it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    metrics = {"width": width, "height": DESKTOP[1], "deviceScaleFactor": 1, "mobile": width < DESKTOP[0]}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than {width}px"
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
        driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path


def sign_in(driver: WebDriver, facade: FacadeProcess, key: str) -> None:
    driver.get(f"{facade.url}/ui/")
    field = until(driver, lambda d: d.find_element(By.ID, "api-key"), "the sign-in form")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()


def row_of(driver: WebDriver, name: str) -> WebElement | None:
    for row in driver.find_elements(By.CSS_SELECTOR, "#task-table tbody tr"):
        if row.find_element(By.CSS_SELECTOR, ".name").text == name:
            return row
    return None


def act(driver: WebDriver, name: str, action: str) -> None:
    """Press a row's button; a row re-rendered between finding and pressing is found again."""

    def press(d: WebDriver) -> bool:
        row_of(d, name).find_element(By.CSS_SELECTOR, f"[data-action={action}]").click()
        return True

    until(driver, press, f"{action} pressed on {name}")


def fill_task_form(driver: WebDriver, **fields: str) -> None:
    for field, value in fields.items():
        element = driver.find_element(By.ID, f"task-{field}")
        if element.tag_name == "select":
            Select(element).select_by_value(value)
            continue
        element.clear()
        element.send_keys(value)
    driver.find_element(By.ID, "task-submit").click()


async def test_a_tenant_signs_in_creates_a_task_sees_it_run_pauses_resumes_and_sees_the_heartbeat(
    browser: WebDriver, facade: FacadeProcess, tenant: Tenant
) -> None:
    sign_in(browser, facade, "stan_not_a_key")
    until(browser, lambda d: "refused" in d.find_element(By.ID, "api-key-error").text, "a wrong key is refused")
    assert browser.execute_script("return sessionStorage.getItem('stan.apiKey')") is None

    sign_in(browser, facade, tenant.key)
    until(browser, lambda d: d.find_element(By.ID, "console").is_displayed(), "the console after signing in")
    assert browser.execute_script("return sessionStorage.getItem('stan.apiKey')") == tenant.key
    assert tenant.key not in browser.current_url

    browser.find_element(By.ID, "hb-run").click()
    until(browser, lambda d: d.find_element(By.ID, "health").text in ("healthy", "unhealthy"), "the heartbeat's health")
    # The list is drawn anew at each refresh: read it where a re-drawn item is read again.
    until(
        browser,
        lambda d: any("workflows" in item.text for item in d.find_elements(By.CSS_SELECTOR, "#checks li")),
        "the workflows check among the results",
    )
    assert browser.find_element(By.ID, "hb-last").text != "never"

    browser.find_element(By.ID, "new-task").click()
    until(browser, lambda d: d.find_element(By.ID, "task-dialog").is_displayed(), "the task form")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#task-action option"), "the actions to choose from")
    fill_task_form(
        browser, name="Console audit", action="audit_workflows", schedule="61 * * * *", modelId="model_abc123"
    )
    error = until(browser, lambda d: d.find_element(By.ID, "task-schedule-error").text, "the schedule's field error")
    assert "61" in error or "cron" in error, error
    assert browser.find_element(By.ID, "task-schedule").get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.ID, "task-name-error").text == ""

    fill_task_form(browser, schedule="*/2 * * * * *")
    until(browser, lambda d: not d.find_element(By.ID, "task-dialog").is_displayed(), "the form closes once created")
    row = until(browser, lambda d: row_of(d, "Console audit"), "the new task's row")
    assert "every 2 seconds, UTC" in row.text
    until(
        browser,
        lambda d: row_of(d, "Console audit").find_elements(By.CSS_SELECTOR, ".strip .run.succeeded"),
        "a succeeded run in the task's run strip",
    )
    tip = until(
        browser,
        lambda d: (
            row_of(d, "Console audit")
            .find_element(By.CSS_SELECTOR, ".strip .run.succeeded")
            .get_attribute("aria-label")
        ),
        "the run's description",
    )
    assert tip.startswith("succeeded · scheduled"), tip
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#upcoming-list time"), "the upcoming runs")
    print(f"screenshot: {screenshot(browser, 'desktop')}")

    act(browser, "Console audit", "pause")
    until(
        browser,
        lambda d: "paused" in row_of(d, "Console audit").find_element(By.CSS_SELECTOR, ".badge").text,
        "the task paused",
    )
    assert (
        until(
            browser,
            lambda d: row_of(d, "Console audit").find_element(By.CSS_SELECTOR, "td[data-label='Next run']").text,
            "the paused task's next run",
        )
        == "—"
    )
    act(browser, "Console audit", "resume")
    until(
        browser,
        lambda d: "active" in row_of(d, "Console audit").find_element(By.CSS_SELECTOR, ".badge").text,
        "the task resumed",
    )

    print(f"screenshot: {screenshot(browser, 'phone', PHONE_WIDTH)}")

    act(browser, "Console audit", "delete")
    until(browser, lambda d: d.find_element(By.ID, "confirm-dialog").is_displayed(), "the delete confirmation")
    browser.find_element(By.ID, "confirm-ok").click()
    until(browser, lambda d: row_of(d, "Console audit") is None, "the task deleted")

    browser.find_element(By.ID, "sign-out").click()
    assert browser.find_element(By.ID, "sign-in").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('stan.apiKey')") is None


async def test_the_task_table_first_renders_200_tasks_quickly(
    browser: WebDriver, facade: FacadeProcess, tenant: Tenant, http: httpx.AsyncClient
) -> None:
    places = asyncio.Semaphore(4)  # a modest pace, well inside the key's rate limit

    async def create(number: int) -> None:
        async with places:
            task = {
                "name": f"Report {number:03d}",
                "action": "audit_workflows",
                "modelId": "model_abc123",
                "schedule": f"{number % 60} {number % 24} * * *",
                "timeZone": "Europe/Berlin",
            }
            answer = await http.post("/api/v1/stan/tasks", json=task, headers=tenant.headers)
            assert answer.status_code == 201, answer.text

    await asyncio.gather(*(create(number) for number in range(TABLE_TASKS)))
    browser.get(f"{facade.url}/ui/")
    browser.execute_script("sessionStorage.setItem('stan.apiKey', arguments[0])", tenant.key)
    browser.get(f"{facade.url}/ui/")
    rendered = until(
        browser,
        lambda d: d.execute_script(
            "const mark = performance.getEntriesByName('stan:tasks-rendered')[0]; return mark && mark.startTime"
        ),
        "the first render of the task table",
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#task-table tbody tr")) == TABLE_TASKS
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "first-render.json").write_text(json.dumps({"tasks": TABLE_TASKS, "milliseconds": rendered}))
    print(f"first render of {TABLE_TASKS} tasks: {rendered:.0f} ms after navigation start")
    assert rendered < 5000


async def test_console_and_docs_are_package_files_under_a_same_origin_policy(
    browser: WebDriver, facade: FacadeProcess, http: httpx.AsyncClient
) -> None:
    for path in ("/ui/", "/ui/console.js", "/ui/console.css", "/docs/", "/docs/swagger-ui/swagger-ui-bundle.js"):
        answer = await http.get(path)
        assert answer.status_code == 200, path
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert "script-src 'self';" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "http" not in answer.text[:2000].replace("http-equiv", "") or path.endswith(".js"), path
    assert (await http.get("/api/v1/stan/overview/tasks")).status_code == 401, "the console's data has a door"

    browser.get(f"{facade.url}/docs")
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 10, "Swagger UI's operations")
    assert browser.find_elements(By.CSS_SELECTOR, "[data-path='/api/v1/stan/overview/upcoming']")
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(entry => new URL(entry.name).origin)"
    )
    assert set(origins) == {facade.url}, origins


async def test_overview_answers_only_the_tenants_own_tasks_with_runs_words_and_upcoming_runs(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    task = {
        "name": "Morning",
        "action": "audit_workflows",
        "schedule": "0 9 * * 1-5",
        "modelId": "model_abc123",
        "timeZone": "Europe/Berlin",
    }
    created = (await http.post("/api/v1/stan/tasks", json=task, headers=tenant.headers)).json()
    paused = (await http.post("/api/v1/stan/tasks", json={**task, "name": "Paused"}, headers=tenant.headers)).json()
    await http.post(f"/api/v1/stan/tasks/{paused['id']}/pause", headers=tenant.headers)

    overview = (await http.get("/api/v1/stan/overview/tasks", headers=tenant.headers)).json()
    listed = (await http.get("/api/v1/stan/tasks", headers=tenant.headers)).json()
    assert [t["id"] for t in overview] == [t["id"] for t in listed], "the contract's order"
    by_id = {t["id"]: t for t in overview}
    assert by_id[created["id"]]["scheduleText"] == "Monday to Friday at 09:00, Europe/Berlin"
    assert (by_id[created["id"]]["recentRuns"], by_id[created["id"]]["lastResult"]) == ([], None)
    assert (by_id[paused["id"]]["status"], by_id[paused["id"]]["nextRunAt"]) == ("paused", None)
    assert (await http.get("/api/v1/stan/overview/tasks", headers=other_tenant.headers)).json() == []

    upcoming = (await http.get("/api/v1/stan/overview/upcoming?hours=168", headers=tenant.headers)).json()
    assert [run["taskId"] for run in upcoming["runs"]] == [created["id"]] * 5
    assert upcoming["runs"][0]["at"] == created["nextRunAt"]
    assert (await http.get("/api/v1/stan/overview/upcoming?hours=0", headers=tenant.headers)).status_code == 422

    heartbeat = (await http.get("/api/v1/stan/overview/heartbeat", headers=tenant.headers)).json()
    assert heartbeat.keys() == {"lastRunAt", "nextRunAt", "healthy", "results"}


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 9 * * *", "every day at 09:00"),
        ("*/5 * * * *", "every 5 minutes"),
        ("*/2 * * * * *", "every 2 seconds"),
        ("0 9 * * 1-5", "Monday to Friday at 09:00"),
        ("30 8 * * MON", "every Monday at 08:30"),
        ("0 9,17 * * *", "every day at 09:00 and 17:00"),
        ("5 * * * *", "every hour at minute 5"),
        ("0 0 1 * *", "on day 1 of the month at 00:00"),
        ("0 12 * JAN,jul *", "every day in January and July at 12:00"),
        ("0 0 L * *", "cron 0 0 L * *"),
    ],
)
def test_a_schedule_in_words(expression: str, words: str) -> None:
    assert describe(expression, "Europe/Berlin") == f"{words}, Europe/Berlin"
