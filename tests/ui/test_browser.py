"""A real headless Chromium against a whole TME: log in, create a write task on the
simulated pump, watch it reach succeeded without reloading the page, then see its
workflow graph drawn with the step coloured by state and the pump's new setpoint
among the fleet page's latest values."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tme.stack import LocalStack, StackConfig

PROFILES = Path(__file__).resolve().parents[2] / "configs" / "profiles"
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "data" / "screenshots"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)

# NiceGUI serves one app per process, and the tests of the pages under its simulated
# user leave that app started: `make test` runs this module in a process of its own.
pytestmark = [pytest.mark.slow, pytest.mark.own_process]


def _missing(reason: str) -> NoReturn:
    """Skip on a laptop without the browser; in CI (CI=true) it must be there, so fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (scripts/start-services.sh installs them)")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[object]:
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        _missing("Debian's chromium and chromium-driver are not installed")
    try:
        from selenium import webdriver
    except ImportError:
        _missing("selenium is not installed (the dev extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # one for the module: NiceGUI mounts the dashboard on one app per process
    tmp_path = tmp_path_factory.mktemp("stack")
    config = StackConfig(
        database_url=f"sqlite:///{tmp_path}/tme.db",
        state_dir=tmp_path / "state",
        profiles_dir=PROFILES,
        site=f"site-{uuid.uuid4().hex[:8]}",
        dashboard=True,
    )
    with LocalStack(config) as running:
        yield running


def test_operator_creates_a_write_task_and_watches_it_succeed(browser, stack) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    try:
        _walk_through(browser, stack, wait, By, Keys, ec, WebDriverWait)
    finally:
        browser.save_screenshot(str(SCREENSHOT_DIR / "task-succeeded.png"))


def _walk_through(browser, stack, wait, By, Keys, ec, WebDriverWait) -> None:
    browser.get(stack.url + "/")  # `/` leads to the dashboard, which asks to sign in
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "button.sign-in")))
    fields = browser.find_elements(By.CSS_SELECTOR, "input")
    fields[0].send_keys("admin")
    fields[1].send_keys(stack.admin_password)
    fields[1].send_keys(Keys.ENTER)
    wait.until(
        ec.visibility_of_element_located((By.XPATH, "//*[normalize-space(text())='Overview']"))
    )

    browser.get(stack.url + "/ui/tasks")
    wait.until(
        ec.element_to_be_clickable((By.XPATH, "//button[contains(normalize-space(.), 'New task')]"))
    ).click()
    form = {
        "task-name": "set pump speed from the dashboard",
        "task-site": stack.config.site,
        "task-agent": "skid-a",
        "task-device": "pump1",
    }
    for marker, text in form.items():
        field = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, f".{marker} input")))
        field.send_keys(text)
    op = browser.find_element(By.CSS_SELECTOR, ".task-op")
    op.click()
    wait.until(
        ec.element_to_be_clickable(
            (By.XPATH, "//*[contains(@class, 'q-item')][normalize-space(.)='modbus.write']")
        )
    ).click()
    params = browser.find_element(By.CSS_SELECTOR, ".task-params input")
    params.send_keys(Keys.CONTROL, "a")
    params.send_keys('{"point": "speed_setpoint", "value": 1350, "verify": true}')
    browser.find_element(By.XPATH, "//button[normalize-space(.)='Create']").click()

    wait.until(
        ec.visibility_of_element_located(
            (
                By.XPATH,
                "//*[contains(@class, 'text-2xl')][contains(., 'set pump speed')]",
            )
        )
    )
    page_id = browser.execute_script("return window.performance.timeOrigin")
    status = (By.XPATH, "//*[contains(@class, 'state-chip')][normalize-space(.)='succeeded']")
    WebDriverWait(browser, 30).until(ec.visibility_of_element_located(status))
    # The same document all along: the chip changed live, nothing reloaded the page.
    assert browser.execute_script("return window.performance.timeOrigin") == page_id
    assert stack.plant.read_register(1, 0) == 1350

    browser.find_element(By.XPATH, "//a[normalize-space(.)='workflow']").click()
    # Mermaid drew the graph: the step's node carries its state's class (and colour).
    node = (By.CSS_SELECTOR, "svg g.node.succeeded")
    wait.until(ec.visibility_of_element_located(node))
    browser.save_screenshot(str(SCREENSHOT_DIR / "workflow-run.png"))

    browser.get(stack.url + "/ui/fleet")
    value = (By.XPATH, "//*[contains(@class, 'point-value')][normalize-space(.)='1350']")
    wait.until(ec.visibility_of_element_located(value))
    browser.save_screenshot(str(SCREENSHOT_DIR / "fleet-values.png"))


def _sign_in(browser, stack, wait, By, Keys, ec) -> None:
    browser.get(stack.url + "/ui/login")
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "button.sign-in")))
    fields = browser.find_elements(By.CSS_SELECTOR, "input")
    fields[0].send_keys("admin")
    fields[1].send_keys(stack.admin_password)
    fields[1].send_keys(Keys.ENTER)
    wait.until(
        ec.visibility_of_element_located((By.XPATH, "//*[normalize-space(text())='Overview']"))
    )


def test_pages_fit_a_phone_and_their_tables_scroll_inside(browser, stack) -> None:
    """At a phone's width a page's wide tables scroll sideways in their own box: the page
    itself (header, title, filters, the other cards) stays as wide as the screen."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(390, 844)  # Chromium keeps to its narrowest window, 500 px
    _sign_in(browser, stack, wait, By, Keys, ec)
    import tme

    with tme.Client(stack.url, token=stack.token) as client:
        task = client.tasks.create(
            name="read tank level for a long while on the far side of the plant",
            op="modbus.read",
            target={"site": stack.config.site, "agent": "skid-a", "device": "tank1"},
            params={"point": "level"},
        )
    pages = {
        "/ui/tasks": "//a[contains(., 'far side of the plant')]",
        f"/ui/tasks/{task.id}": "//*[normalize-space(text())='Definition']",
        "/ui/fleet": "//*[contains(@class, 'point-value')]",
    }
    for path, shown in pages.items():
        browser.get(stack.url + path)
        wait.until(ec.visibility_of_element_located((By.XPATH, shown)))
        page = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        browser.save_screenshot(str(SCREENSHOT_DIR / f"phone{path.replace('/', '-')}.png"))
        assert page[0] <= page[1], f"{path} is {page[0]} px wide on a {page[1]} px screen"
