"""The reference portal (examples/portal) in front of a real service, and a headless Chromium.

One service, one portal and one browser for the whole module: each test uses NIRs of its
own and starts from a browser without cookies. Debian's ``chromium`` and ``chromium-driver``
are installed by ``make browser`` (part of ``make test``); without them the browser tests are
skipped, and fail under ``CI=true``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from ameli_grpc.testing import AmeliTestServer
from tests.portal.harness import PortalUnderTest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AmeliTestServer]:
    """The real embedded service, with the outbox the codes are read from."""
    with AmeliTestServer(tmp_path_factory.mktemp("portal_service")) as server:
        yield server


@pytest.fixture(scope="module")
def portal(service: AmeliTestServer) -> Iterator[PortalUnderTest]:
    with PortalUnderTest(service) as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module (skipped, or failed under CI, when missing)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "chromium and chromium-driver are not installed (make browser)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)  # --no-sandbox: CI containers run as root
    options.add_argument("--window-size=720,960")
    options.add_argument("--lang=fr-FR")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: webdriver.Chrome, portal: PortalUnderTest) -> webdriver.Chrome:
    """The browser on the portal's login page, with no cookie left by an earlier test."""
    chromium.get(portal.url + "/")
    chromium.delete_all_cookies()
    chromium.get(portal.url + "/")
    return chromium


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screens are saved: ``AMELI_TEST_SCREENSHOTS`` (``make screenshots`` sets
    docs/screenshots, which the README shows), else a temporary directory."""
    wanted = os.environ.get("AMELI_TEST_SCREENSHOTS")
    if not wanted:
        return tmp_path_factory.mktemp("screenshots")
    directory = Path(wanted)
    directory.mkdir(parents=True, exist_ok=True)
    return directory
