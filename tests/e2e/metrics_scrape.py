"""Reading ``/metrics`` as Prometheus would: over HTTP, parsed with prometheus_client's parser."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

SERVICE = "ameli.auth.v1.AuthService"


class Scrape:
    """One scrape: every sample's value by its name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        """The sample of exactly these labels; None if it is not there."""
        return self.samples.get((name, frozenset(labels.items())))

    def rpc(self, name: str, method: str, **labels: str) -> float | None:
        """A ``grpc_server_*`` sample of one AuthService method."""
        return self.value(
            name, grpc_type="unary", grpc_service=SERVICE, grpc_method=method, **labels
        )

    def label_values(self) -> Iterator[str]:
        """Every label value but the histogram buckets' bounds (``le``)."""
        for _name, labels in self.samples:
            for label, value in labels:
                if label != "le":
                    yield value

    def names(self) -> set[str]:
        return {name for name, _labels in self.samples}


async def scrape(port: int, host: str = "127.0.0.1") -> Scrape:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://{host}:{port}/metrics")
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


def only(scraped: Scrape, name: str) -> Mapping[frozenset[tuple[str, str]], float]:
    """Every sample of one name, by its labels."""
    return {labels: value for (each, labels), value in scraped.samples.items() if each == name}
