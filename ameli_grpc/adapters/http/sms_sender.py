"""``SmsSender`` over HTTP: the advisor's provisional code handed to an SMS gateway.

Contract of the SMS gateway:

- ``POST {base_url}/v1/messages`` with the JSON body
  ``{"to": "<recipient>", "from": "<sender id>", "text": "<the SMS>"}`` and,
  when an API key is configured, the header ``Authorization: Bearer <key>``.
  ``to`` is the mobile phone on file in E.164, read by ``domain.phone``: a
  national number gets the country code of its region (``06 12 34 56 78`` →
  ``+33612345678``, ``0690 12 34 56`` → ``+590690123456``), an international
  one keeps its own. A phone that is not a mobile (a landline, no number at
  all) raises ``ValueError`` before anything is sent. ``from`` is the
  sender id (``AMELI`` by default); ``text`` is the French SMS of
  ``domain.messages.provisional_code_sms`` (one 160-character GSM-7 SMS).
- ``200``, ``201`` or ``202`` means the gateway accepted the message (the
  body is not read for anything: the SMS may still be delivered later).

Anything else (no complete answer within ``timeout`` seconds, a connection
error, a redirect — never followed, so the code never goes to another host —,
any other status) raises ``DependencyUnavailable``; the advisor's reset then
withdraws the provisional code. The request is not retried: a retry after a
timeout could send the code twice.

Each send logs one line with the masked phone (``06******78``), the outcome
and the duration; never the phone, the code, the text nor the gateway's body.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
import structlog

from ameli_grpc.adapters.outages import map_outages, type_name
from ameli_grpc.domain.errors import DependencyUnavailable
from ameli_grpc.domain.masking import mask_phone
from ameli_grpc.domain.messages import provisional_code_sms
from ameli_grpc.domain.phone import PhoneNumber

_log = structlog.get_logger(__name__)

_MESSAGES_PATH = "/v1/messages"
_ACCEPTED = frozenset({httpx.codes.OK, httpx.codes.CREATED, httpx.codes.ACCEPTED})


def e164_phone(phone: str) -> str:
    """The recipient as the gateway expects it: ``0690 12 34 56`` → ``+590690123456``.

    Raises ``ValueError`` (never quoting the number) unless it is a mobile.
    """
    number = PhoneNumber.parse(phone)
    if not number.mobile:
        raise ValueError("the phone number on file is not a mobile number")
    return number.e164


class HttpSmsSender:
    """The ``SmsSender`` port on an HTTP SMS gateway (contract in the module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout: float,
        sender_id: str = "AMELI",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("SMS gateway: the timeout must be > 0")
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("the SMS gateway URL must be an absolute http(s) URL")
        if not sender_id.strip():
            raise ValueError("the SMS sender id must not be empty")
        if api_key and not (api_key.isascii() and api_key.isprintable()):
            raise ValueError("the SMS gateway API key must be printable ASCII")  # never echo it
        self._url = base_url.rstrip("/") + _MESSAGES_PATH
        self._sender_id = sender_id
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    async def send_provisional_code(self, phone: str, code: str, valid_minutes: int) -> None:
        masked = mask_phone(phone)
        payload = {
            "to": e164_phone(phone),
            "from": self._sender_id,
            "text": provisional_code_sms(code, timedelta(minutes=valid_minutes)),
        }
        started = time.perf_counter()
        try:
            with map_outages("sms", (httpx.HTTPError, OSError, TimeoutError), describe=_failure):
                status = await self._post(payload)
        except DependencyUnavailable as error:
            # Our own label only: the gateway's words might quote the number or the text.
            _log.warning(
                "provisional_code_sms_failed",
                dependency="sms",
                transport="http",
                to=masked,
                error=error.detail,
                duration_ms=_ms_since(started),
            )
            raise
        _log.info(
            "provisional_code_sms_sent",
            transport="http",
            to=masked,
            status=status,
            duration_ms=_ms_since(started),
        )

    async def _post(self, payload: dict[str, str]) -> int:
        """POST the SMS; its status, or ``HTTPStatusError`` unless accepted."""
        async with asyncio.timeout(self._timeout):
            response = await self._client.post(
                self._url, json=payload, headers=self._headers, follow_redirects=False
            )
        if response.status_code not in _ACCEPTED:
            raise httpx.HTTPStatusError(
                f"the SMS gateway answered {response.status_code}",
                request=response.request,
                response=response,
            )
        return response.status_code

    async def aclose(self) -> None:
        """Close the HTTP client if this sender created it (an injected one is the caller's)."""
        if self._owns_client:
            await self._client.aclose()


def _failure(error: BaseException) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"http_{error.response.status_code}"
    return type_name(error)


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
