"""The `example_log` output: appends each job to a file as one JSON line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from bridge.config import ConfigModel, FilePath
from bridge.plugin import Job, Outcome, OutcomeKind, Output, PluginContext
from bridge.sms import mask_number


class LogConfig(ConfigModel):
    """Options under `outputs.<name>:`."""

    path: FilePath  # relative paths are relative to the config file


class LogOutput(Output):
    """Writes a batch of jobs with one append; returns one outcome per job and never raises."""

    type_name = "example_log"
    config_class = LogConfig
    config: LogConfig

    def __init__(self, config: LogConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)

    def split(self, jobs: Sequence[Job]) -> list[list[Job]]:
        return [list(jobs)]  # one append delivers the whole batch

    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        lines = "".join(
            json.dumps(
                {"job_id": job.id, "recipient": job.recipient, "text": job.text, **job.payload},
                ensure_ascii=False,
                default=str,
            )
            + "\n"
            for job in jobs
        )
        try:
            await asyncio.to_thread(self._append, lines)
        except OSError as exc:
            # A full disk may clear up: retry later, and say why in words a person can read.
            reason = f"cannot append to {self.config.path}: {exc.strerror}"
            return [Outcome(job.id, OutcomeKind.RETRY, reason=reason) for job in jobs]
        for job in jobs:
            # Numbers are masked in logs: 151****0086.
            self.log.info("job_logged", job=job.id, recipient=mask_number(job.recipient))
        return [Outcome(job.id, OutcomeKind.SENT, ref=f"line-{job.id}") for job in jobs]

    def _append(self, lines: str) -> None:
        with self.config.path.open("a", encoding="utf-8") as file:
            file.write(lines)
