"""The guide's screens in headless Chromium: the portal in front of the real service.

Each refusal must reach the red box exactly as the service wrote it; the lock times are
Paris time rounded up to the minute, from the service's clock (which case 2 moves forward),
so a test accepts the minute before or after its step.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ameli_portal.app import DEVICE_COOKIE
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.wait import WebDriverWait

from ameli_grpc.domain.messages import paris_time
from ameli_grpc.testing import AmeliTestServer
from tests.portal.harness import PortalUnderTest

PASSWORD = "Portail-Demo-2026!"
WRONG_ENTRY = (
    "Les informations saisies sont erronées. Merci de vérifier votre saisie. "
    "Attention : 3 essais infructueux bloquent l'accès au service."
)
SHORT = "dd/MM/yyyy - HH'h'mm"
LONG = "EEEE d MMMM y HH:mm"


def nir(serial: int) -> str:
    """A valid 15-character NIR of its own per test (key computed)."""
    body = f"1800175{serial:03d}{serial % 1000:03d}"
    return body + f"{97 - int(body) % 97:02d}"


def fill_login(browser: webdriver.Chrome, number: str, password: str = PASSWORD) -> None:
    browser.find_element(By.ID, "nir").send_keys(number)
    browser.find_element(By.ID, "password").send_keys(password)
    submit(browser, "connexion")


def submit(browser: webdriver.Chrome, button: str) -> None:
    """Click a form's button and wait for the page it leads to (a click does not wait)."""
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, button).click()
    WebDriverWait(browser, 10).until(staleness_of(page))


def red_box(browser: webdriver.Chrome) -> str:
    return str(browser.find_element(By.ID, "erreur").text)


def type_the_emailed_code(browser: webdriver.Chrome, service: AmeliTestServer, email: str) -> None:
    """« Recevoir un code de sécurité », then the code of the email just sent typed in."""
    submit(browser, "envoi")
    browser.find_element(By.ID, "code").send_keys(service.last_code(email))


def shot(browser: webdriver.Chrome, directory: Path, name: str) -> None:
    browser.save_screenshot(str(directory / f"{name}.png"))


def one_of(text: Callable[[datetime], str], start: datetime, end: datetime) -> set[str]:
    """The message for a lock set between ``start`` and ``end`` (minutes rounded up)."""
    return {text(start), text(end)}


def test_login_with_code_then_trusted_device(
    browser: webdriver.Chrome,
    portal: PortalUnderTest,
    service: AmeliTestServer,
    screenshots: Path,
) -> None:
    """Steps 0 to 3 with the emailed code and the box ticked; the next login needs no code."""
    service.add_account(nir(1), PASSWORD, email="tiphaine@example.com")
    shot(browser, screenshots, "0-login")
    fill_login(browser, nir(1))
    assert browser.current_url == portal.url + "/code"
    assert browser.find_element(By.ID, "adresse").text == "t***@e***.com"
    shot(browser, screenshots, "1-request-code")
    type_the_emailed_code(browser, service, "tiphaine@example.com")
    browser.find_element(By.ID, "personal_computer").click()
    shot(browser, screenshots, "3-code")
    submit(browser, "connexion")
    assert browser.current_url == portal.url + "/compte"
    shot(browser, screenshots, "4-logged-in")

    device = browser.get_cookie(DEVICE_COOKIE)
    assert device is not None
    assert (device["secure"], device["httpOnly"], device["sameSite"]) == (True, True, "Strict")
    assert DEVICE_COOKIE not in browser.execute_script("return document.cookie")

    submit(browser, "deconnexion")
    fill_login(browser, nir(1))
    assert browser.current_url == portal.url + "/compte"  # no code asked: a trusted device


def test_unticked_box_keeps_asking_for_a_code(
    browser: webdriver.Chrome, portal: PortalUnderTest, service: AmeliTestServer
) -> None:
    """Without « je me connecte avec mon ordinateur personnel » no device cookie is set."""
    service.add_account(nir(2), PASSWORD, email="b@example.fr")
    fill_login(browser, nir(2))
    type_the_emailed_code(browser, service, "b@example.fr")
    submit(browser, "connexion")
    assert browser.current_url == portal.url + "/compte"
    assert browser.get_cookie(DEVICE_COOKIE) is None
    submit(browser, "deconnexion")
    fill_login(browser, nir(2))
    assert browser.current_url == portal.url + "/code"


def test_case_2_code_expired(
    browser: webdriver.Chrome, service: AmeliTestServer, screenshots: Path
) -> None:
    """Case 2: a code typed after 15 minutes; the code screen offers a new one, which works."""
    service.add_account(nir(12), PASSWORD, email="d@example.fr")
    fill_login(browser, nir(12))
    type_the_emailed_code(browser, service, "d@example.fr")
    service.advance(minutes=15)
    submit(browser, "connexion")
    assert red_box(browser) == (
        "Le code de sécurité n'a pas été saisi dans les 15 minutes. Merci d'en demander un nouveau."
    )
    assert browser.find_element(By.ID, "envoi").text == "RECEVOIR UN NOUVEAU CODE DE SÉCURITÉ"
    shot(browser, screenshots, "case-2")
    type_the_emailed_code(browser, service, "d@example.fr")
    submit(browser, "connexion")
    assert browser.find_elements(By.ID, "succes")


def test_case_3_code_quota(
    browser: webdriver.Chrome, service: AmeliTestServer, screenshots: Path
) -> None:
    """Case 3: a sixth code within the hour blocks for one hour, back on the first screen."""
    service.add_account(nir(13), PASSWORD, email="c@example.fr")
    fill_login(browser, nir(13))
    submit(browser, "envoi")
    for _ in range(4):
        submit(browser, "renvoi")
    start = service.clock.now()
    submit(browser, "renvoi")
    end = service.clock.now() + timedelta(seconds=1)
    assert red_box(browser) in one_of(
        lambda at: (
            "Le nombre maximum de demandes de code a été atteint. L'accès au service est "
            f"bloqué jusqu'au {paris_time(at + timedelta(hours=1), SHORT)} (heure de Paris). "
            "À la fin du blocage, pensez à vérifier le dossier Spam ou Indésirable de votre "
            "boîte mail."
        ),
        start,
        end,
    )
    assert browser.find_elements(By.ID, "nir")  # the login is over: the first screen
    shot(browser, screenshots, "case-3")


def test_case_5_three_wrong_codes(
    browser: webdriver.Chrome, service: AmeliTestServer, screenshots: Path
) -> None:
    """Cases 4 and 5: a wrong code says so; the third blocks for 15 minutes."""
    service.add_account(nir(15), PASSWORD, email="e@example.fr")
    fill_login(browser, nir(15))
    submit(browser, "envoi")
    wrong = "000000" if service.last_code("e@example.fr") != "000000" else "111111"
    for attempt in range(3):
        if attempt == 2:
            start = service.clock.now()
        browser.find_element(By.ID, "code").send_keys(wrong)
        submit(browser, "connexion")
        if attempt < 2:
            assert red_box(browser) == WRONG_ENTRY
    end = service.clock.now() + timedelta(seconds=1)
    assert red_box(browser) in one_of(
        lambda at: (
            "Les informations saisies sont erronées. L'accès au service est bloqué jusqu'au "
            f"{paris_time(at + timedelta(minutes=15), SHORT)} (heure de Paris)."
        ),
        start,
        end,
    )
    shot(browser, screenshots, "case-5")


def test_case_6_three_wrong_passwords(
    browser: webdriver.Chrome, service: AmeliTestServer, screenshots: Path
) -> None:
    """Case 6: the third wrong password blocks for 15 minutes."""
    service.add_account(nir(16), PASSWORD)
    fill_login(browser, nir(16), "faux")
    assert red_box(browser) == WRONG_ENTRY
    shot(browser, screenshots, "case-4")
    fill_login(browser, nir(16), "faux")
    start = service.clock.now()
    fill_login(browser, nir(16), "faux")
    end = service.clock.now() + timedelta(seconds=1)
    assert red_box(browser) in one_of(
        lambda at: (
            "Pour des raisons de sécurité, l'accès à votre compte ameli est bloqué jusqu'au "
            f"{paris_time(at + timedelta(minutes=15), LONG)} (heure de Paris). Si vous n'êtes "
            "pas sûr de votre mot de passe, cliquez sur le lien « Mot de passe oublié ? » "
            "ci-dessous."
        ),
        start,
        end,
    )
    shot(browser, screenshots, "case-6")


# The refusals of the password step that a person cannot get past from the portal: the
# account (no validated email) or the RFI (not covered, affiliation pending) decides.
PASSWORD_STEP_REFUSALS = [
    pytest.param(
        11,
        {"email_validated": False},
        "Désormais, un code de sécurité envoyé par mail est nécessaire pour vous connecter. "
        "Or, vous n'avez pas d'adresse mail renseignée dans votre compte. Validez-la dans "
        "l'application Compte ameli ou contactez votre caisse d'assurance maladie.",
        id="case-1",
    ),
    pytest.param(
        17,
        {"affiliation": "NOT_COVERED"},
        "D'après nos informations vous ne dépendez pas du régime général ou de l'un des "
        "régimes partenaires de l'Assurance Maladie. Veuillez consulter les services de "
        "votre régime d'affiliation.",
        id="case-7",
    ),
    pytest.param(
        18,
        {"affiliation": "PENDING"},
        "Votre rattachement à votre caisse d'assurance maladie est en cours, vous pourrez "
        "bientôt bénéficier de votre compte ameli.",
        id="case-8",
    ),
]


@pytest.mark.parametrize(("serial", "account", "message"), PASSWORD_STEP_REFUSALS)
def test_cases_1_7_and_8_show_their_message_after_the_password(
    browser: webdriver.Chrome,
    service: AmeliTestServer,
    screenshots: Path,
    request: pytest.FixtureRequest,
    serial: int,
    account: dict[str, Any],
    message: str,
) -> None:
    """Case 1 (no validated email), 7 (not covered), 8 (affiliation pending): the right
    password, then the red box with the service's message."""
    service.add_account(nir(serial), PASSWORD, **account)
    fill_login(browser, nir(serial))
    assert red_box(browser) == message
    shot(browser, screenshots, request.node.callspec.id)
