"""The fake's web page in a real headless Chromium while the doubler runs: log-in, lineage, streams, live counts.

Selenium drives Debian's `chromium` through its `chromedriver` (never a browser a tool downloads). Its calls
block, so they run in a worker thread while the fake and the doubler go on in the test's event loop.
Chromium starts with everything that would reach out to the network switched off: this machine has none.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from connectors.doubler import Doubler
from framework.testing import FakeFoundry

from .stream_support import doubler_streams, wait_committed

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(
        f"no {CHROMIUM} or {CHROMEDRIVER}: `apt-get install chromium chromium-driver` (make test does, as root)"
        " to run the web page's browser test",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402  (only once the browser is known to be there)
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.timeout(120)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1300",
)
T = TypeVar("T")


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


async def in_browser(action: Callable[..., T], *args: Any) -> T:
    """Run a blocking Selenium step off the event loop, so the fake can answer the browser meanwhile."""
    return await asyncio.to_thread(action, *args)


class Page:
    """What a person does on the page, each step blocking until the page shows it (or 15 s pass)."""

    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        self.url = url

    def wait(self, check: Callable[[WebDriver], Any], what: str) -> Any:
        try:
            wait = WebDriverWait(
                self.driver, 15, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
            )
            return wait.until(check)
        except TimeoutException:
            shown = f"status {self.text('#live')!r}; lineage {self.text('#lineage table')!r}"
            raise AssertionError(f"page never showed {what}; {shown}") from None

    def texts(self, css: str) -> list[str]:
        """The shown text of every element matching `css`, read in one script: the page swaps its live sections
        every second, so an element found in one call may be gone (stale) by the next."""
        found = self.driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0]))"
            ".map(e => (e.innerText ?? e.textContent ?? '').trim());",
            css,
        )
        return [str(t) for t in found or []]

    def click(self, css: str) -> None:
        """Find and click in one script, for the same reason as `texts`."""
        clicked = self.driver.execute_script(
            "const e = document.querySelector(arguments[0]); if (e) { e.click(); } return Boolean(e);", css
        )
        assert clicked, f"nothing to click at {css}"

    def text(self, css: str) -> str:
        found = self.texts(css)
        return found[0] if found else ""

    def shows_only_the_login_form(self, path: str = "/") -> None:
        self.driver.get(self.url + path)
        self.wait(lambda d: d.find_elements(By.ID, "login"), "the log-in form")
        assert not self.driver.find_elements(By.ID, "lineage")
        assert "numbers" not in self.driver.page_source

    def json_is_refused(self) -> None:
        self.driver.get(self.url + "/_fake/ui/overview")
        assert "Default:Unauthorized" in self.driver.find_element(By.TAG_NAME, "body").text

    def log_in(self, token: str) -> None:
        self.driver.get(self.url + "/")
        field = self.wait(lambda d: d.find_element(By.ID, "token"), "the token field")
        field.send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "#login button").click()

    def login_failed(self) -> None:
        self.wait(lambda d: "Wrong admin token" in d.page_source, "the wrong-token message")
        assert self.driver.find_elements(By.ID, "login") and not self.driver.find_elements(By.ID, "lineage")

    def edge_records(self, direction: str, alias: str, count: int) -> None:
        row = f'#lineage tr[data-direction="{direction}"][data-alias="{alias}"] td.records'
        self.wait(lambda d: self.text(row) == str(count), f"{count} records on the {direction} {alias}")
        label = f'#lineage svg .edge[data-alias="{alias}"] text.count'
        assert self.text(label) == f"{count:,} records"

    def job_in_graph(self, job_rid: str) -> None:
        jobs = self.texts("#lineage svg .job text.name")
        assert jobs == [f"job …{job_rid[-8:]}"], jobs

    def open_stream(self, rid: str) -> None:
        self.click(f'#streams tr[data-rid="{rid}"] a')
        self.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#stream .partition")) == 3, "three partitions")

    def stream_shows(self, total: int, lag: int) -> None:
        self.wait(lambda d: self.text("#stream .total") == str(total), f"{total} records in the stream")
        self.wait(lambda d: self.text("#stream table.subscribers td.lag") == str(lag), f"subscriber lag {lag}")
        values = self.texts("#stream table.records code")
        assert values and all(v.startswith('{"x":') for v in values), values
        ends = self.text("#stream .ends")
        assert sum(int(part.split(":")[1]) for part in ends.split()) == total, ends

    def mark(self) -> None:
        self.driver.execute_script("window.notReloaded = true;")

    def not_reloaded(self) -> None:
        assert self.driver.execute_script("return window.notReloaded === true;"), "the page reloaded"
        assert self.text("#live").startswith("live"), self.text("#live")

    def log_out(self) -> None:
        self.click("header form button")
        self.wait(lambda d: d.find_elements(By.ID, "login"), "the log-in form after logging out")


async def test_the_page_in_headless_chromium_while_the_doubler_runs(tmp_path: Path, chrome: WebDriver) -> None:
    async with FakeFoundry(tmp_path / "fake") as foundry:
        s = await doubler_streams(foundry, partitions=3)
        await foundry.publish(s.numbers, [{"x": i} for i in range(30)])
        page = Page(chrome, foundry.url)
        async with s.job.running(Doubler) as connector:
            await foundry.wait_for_records(s.doubled, 30)
            await wait_committed(foundry, connector.numbers)

            await in_browser(page.shows_only_the_login_form)
            await in_browser(page.json_is_refused)
            await in_browser(page.log_in, "not-the-admin-token")
            await in_browser(page.login_failed)
            await in_browser(page.log_in, foundry.admin_token)
            await in_browser(page.edge_records, "input", "numbers", 30)
            await in_browser(page.edge_records, "output", "doubled", 30)
            await in_browser(page.edge_records, "output", "dead_letters", 0)
            await in_browser(page.job_in_graph, s.job.rid)

            await in_browser(page.open_stream, s.numbers)
            await in_browser(page.stream_shows, 30, 0)
            await in_browser(page.mark)
            await foundry.publish(s.numbers, [{"x": i} for i in range(30, 50)])
            await in_browser(page.edge_records, "input", "numbers", 50)  # live: the page was not reloaded
            await in_browser(page.edge_records, "output", "doubled", 50)
            await in_browser(page.stream_shows, 50, 0)
            await in_browser(page.not_reloaded)
            shot = tmp_path / "page.png"
            assert await in_browser(chrome.save_screenshot, str(shot))
            if target := os.environ.get("FAKE_UI_SCREENSHOT"):
                shutil.copy(shot, target)

            await in_browser(page.log_out)
            await in_browser(page.shows_only_the_login_form, f"/?stream={s.numbers}")
