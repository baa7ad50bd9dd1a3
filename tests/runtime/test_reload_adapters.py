"""A reload whose new adapters fail to start keeps the old ones and leaves no new one running."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.config import ConfigModel
from bridge.plugin.base import Input, Job, Outcome, Output, Parsed
from bridge.runtime.daemon import Daemon
from bridge.testing import DaemonFactory

BASE = """
polling: {replies: 1h, reports: 1h, balance: 1h}
inputs:
  am: {type: alertmanager, allow_unauthenticated: true}
"""
NEW = (
    BASE
    + """  refuses: {type: refuses}
outputs:
  tracked: {type: tracked}
"""
)

LIFE: list[str] = []  # what the tracked outputs went through, in order


class NoOptions(ConfigModel):
    """No options."""


class TrackedOutput(Output[NoOptions]):
    """An output that says when it starts and stops."""

    type_name = "tracked"
    config_class = NoOptions

    async def start(self) -> None:
        LIFE.append(f"start {self.ctx.name}")

    async def stop(self) -> None:
        LIFE.append(f"stop {self.ctx.name}")

    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        raise AssertionError("nothing is routed here")


class RefusingInput(Input[NoOptions]):
    """An input whose start fails, as one whose platform refuses its webhook registration."""

    type_name = "refuses"
    config_class = NoOptions

    async def start(self) -> None:
        raise RuntimeError("the platform refused the webhook")

    def parse(self, body: bytes) -> Parsed:
        return Parsed([])


async def test_a_failed_start_stops_the_new_outputs_and_keeps_the_old_config(
    smsbridge_daemon: DaemonFactory,
) -> None:
    LIFE.clear()
    daemon: Daemon = await smsbridge_daemon(BASE, types=[TrackedOutput, RefusingInput])
    old = daemon.settings
    daemon.settings.path.write_text(daemon.settings.path.read_text().replace(BASE, NEW))

    assert not await daemon.reload()

    assert LIFE == ["start tracked", "stop tracked"]
    assert daemon.settings is old
    assert sorted(daemon._inputs) == ["am"]
