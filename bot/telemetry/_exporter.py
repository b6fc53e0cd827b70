"""agentops' OTLP span exporter, made to report how each export went to ``ExportHealth``.

Imports agentops: only ``agentops_telemetry`` loads this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import requests
from agentops.sdk import core as agentops_core
from agentops.sdk.exporters import AuthenticatedOTLPExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from bot.telemetry._export_health import ExportHealth

log = logging.getLogger("bot.telemetry")


class ReportingExporter(AuthenticatedOTLPExporter):  # type: ignore[misc]
    """Tells ``health`` about every failed HTTP attempt and every successful export."""

    def __init__(self, *args: Any, health: ExportHealth, **kwargs: Any) -> None:
        self._health = health
        super().__init__(*args, **kwargs)

    def _export(self, *args: Any, **kwargs: Any) -> requests.Response:
        # One HTTP attempt; OTLPSpanExporter.export retries 5xx around it for up to
        # its timeout (10 s), so reporting here says "failing" at the first 500.
        try:
            response: requests.Response = super()._export(*args, **kwargs)
        except requests.RequestException as error:
            self._health.record_failure(f"{type(error).__name__} sending to {self._endpoint}")
            raise
        if not response.ok:
            self._health.record_failure(f"HTTP {response.status_code} from {self._endpoint}")
        return response

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result: SpanExportResult = super().export(spans)
        if result is SpanExportResult.SUCCESS:
            self._health.record_success()
        elif not self._health.failing:
            self._health.record_failure(f"could not export spans to {self._endpoint}")
        return result


@contextmanager
def exporter_reporting_to(health: ExportHealth) -> Iterator[None]:
    """While active, agentops' tracing setup builds a ``ReportingExporter``.

    agentops 0.4.21 accepts an ``exporter`` option but never uses it, and builds its
    exporter from this module-level name, so swapping the name is the only hook.
    """
    original = getattr(agentops_core, "AuthenticatedOTLPExporter", None)
    if original is not AuthenticatedOTLPExporter:
        log.debug("agentops changed how it builds its exporter; export failures go unreported")
        yield
        return
    agentops_core.AuthenticatedOTLPExporter = partial(ReportingExporter, health=health)
    try:
        yield
    finally:
        agentops_core.AuthenticatedOTLPExporter = original
