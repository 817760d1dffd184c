"""Run a heartbeat's checks side by side, each under a time limit.

An exception or a timeout becomes an ``error`` result that says what happened;
it never stops the other checks or the loop that runs them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from stan_core import models
from stan_operator.checks import CheckContext, registry

log = logging.getLogger(__name__)


async def run(names: list[str], context: CheckContext) -> list[models.CheckResult]:
    return list(await asyncio.gather(*(_run_one(name, context) for name in names)))


async def _run_one(name: str, context: CheckContext) -> models.CheckResult:
    started = time.monotonic()
    check = registry.checks().get(name)
    if check is None:
        status, message, details = models.CheckStatus.ERROR, f"unknown check {name!r}", tuple[str, ...]()
    else:
        try:
            finding = await asyncio.wait_for(check(context), context.configuration.checkTimeoutSeconds)
            status, message, details = finding.status, finding.message, finding.details
        except TimeoutError:
            status, message, details = (
                models.CheckStatus.ERROR,
                f"timed out after {context.configuration.checkTimeoutSeconds:g}s",
                (),
            )
        except Exception as error:  # a check's bug is reported as its result
            log.exception("check %s failed in %s", name, context.namespace)
            status, message, details = models.CheckStatus.ERROR, f"check failed: {type(error).__name__}: {error}", ()
    return models.CheckResult(
        check=name,
        status=status,
        message=message,
        durationSeconds=round(time.monotonic() - started, 3),
        details=list(details),
    )


def issues(results: list[models.CheckResult]) -> list[models.CheckResult]:
    return [result for result in results if result.status != models.CheckStatus.OK]
