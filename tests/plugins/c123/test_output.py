"""The c123 output: jobs in, one classified outcome per job out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
import structlog
from pydantic import SecretStr

from bridge.plugin.base import Job, OutcomeKind, PluginContext
from bridge.plugins.c123 import C123Config, C123Output
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    Fault,
    FaultKind,
    Simulator,
    SimulatorSettings,
)


@pytest.fixture
async def rig() -> AsyncIterator[tuple[Simulator, C123Output]]:
    async with (
        Simulator(SimulatorSettings(report_delay=0, rate_limit=None)) as sim,
        aiohttp.ClientSession() as http,
    ):
        config = C123Config(
            rate_limit=None,
            base_url=sim.url,
            account=DEFAULT_ACCOUNT,
            authkey=SecretStr(DEFAULT_AUTHKEY),
        )
        ctx = PluginContext(name="sms", http=http, log=structlog.get_logger())
        yield sim, C123Output(config, ctx)


def jobs(*pairs: tuple[str, str]) -> list[Job]:
    return [Job(id=i, recipient=number, text=text) for i, (number, text) in enumerate(pairs, 1)]


async def test_jobs_are_coalesced_and_each_gets_its_msgid(
    rig: tuple[Simulator, C123Output],
) -> None:
    """Seven jobs, five sharing a text, take one gateway call; each job gets its own msgid."""
    sim, output = rig
    batch = jobs(
        *((f"1390000000{i}", "disk full") for i in range(5)),
        ("15102110086", "a"),
        ("15102110087", "b"),
    )
    outcomes = await output.deliver(batch)
    assert [o.job_id for o in outcomes] == [job.id for job in batch]
    assert all(o.kind is OutcomeKind.SENT for o in outcomes)
    assert sim.state.calls == {"getBalance": 1, "sendBatch": 1}  # the key's proof, one send
    by_number = {m.mobile: m.msgid for m in sim.state.messages}
    for job, outcome in zip(batch, outcomes, strict=True):
        assert outcome.ref == by_number[job.recipient]
        assert (outcome.segments, outcome.cost) == (1, Decimal("0.10"))


async def test_invalid_number_fails_alone(rig: tuple[Simulator, C123Output]) -> None:
    """A bad number fails its own job with a readable reason; the others are sent."""
    sim, output = rig
    outcomes = await output.deliver(jobs(("12345", "x"), ("15102110086", "x")))
    assert outcomes[0].kind is OutcomeKind.FAILED
    assert "not a mainland mobile number" in outcomes[0].reason
    assert outcomes[1].kind is OutcomeKind.SENT
    assert len(sim.state.messages) == 1


async def test_jobs_for_the_same_message_share_one_send(
    rig: tuple[Simulator, C123Output],
) -> None:
    """Two jobs that normalise to the same number and text are one SMS; both learn its msgid."""
    sim, output = rig
    outcomes = await output.deliver(jobs(("+8615102110086", "x"), ("15102110086", "x")))
    assert [o.kind for o in outcomes] == [OutcomeKind.SENT, OutcomeKind.SENT]
    assert len(sim.state.messages) == 1
    assert outcomes[0].ref == outcomes[1].ref == sim.state.messages[0].msgid


@pytest.mark.parametrize(
    ("code", "kind", "after"),
    [
        (-1, OutcomeKind.RETRY, 5.0),
        (-9, OutcomeKind.HOLD, 300.0),
        (-11, OutcomeKind.HOLD, 300.0),
        (-10, OutcomeKind.UNKNOWN, None),
        (-4, OutcomeKind.FAILED, None),
        (-2, OutcomeKind.PAUSE_ACCOUNT, 60.0),
        (-3, OutcomeKind.PAUSE_ACCOUNT, 60.0),
        (-5, OutcomeKind.PAUSE_ACCOUNT, 60.0),
        (-6, OutcomeKind.PAUSE_ACCOUNT, 60.0),
        (-7, OutcomeKind.PAUSE_ACCOUNT, 60.0),
        (-8, OutcomeKind.PAUSE_ACCOUNT, 60.0),
    ],
)
async def test_gateway_codes_map_to_outcomes(
    rig: tuple[Simulator, C123Output], code: int, kind: OutcomeKind, after: float | None
) -> None:
    """Each refusal becomes retry, hold (a top-up), pause_account, failed, or unknown: the
    core never sees a gateway code, only the outcome and the reason."""
    sim, output = rig
    sim.state.add_fault(Fault(FaultKind.CODE, code=code, action=Action.SEND_ONCE))
    (outcome,) = await output.deliver(jobs(("15102110086", "x")))
    assert (outcome.kind, outcome.code) == (kind, str(code))
    # A paused account is looked at again when the next probe is due (a minute by default).
    assert outcome.retry_after == (None if after is None else pytest.approx(after, abs=0.5))
    assert f"code {code}" in outcome.reason


async def test_a_paused_account_makes_no_call(rig: tuple[Simulator, C123Output]) -> None:
    """After an account fault every job is held at once, without another gateway call."""
    sim, output = rig
    sim.state.add_fault(Fault(FaultKind.CODE, code=-7, action=Action.SEND_ONCE))
    await output.deliver(jobs(("15102110086", "x")))
    calls = sum(sim.state.calls.values())
    outcomes = await output.deliver(jobs(("15102110087", "y"), ("15102110088", "z")))
    assert {o.kind for o in outcomes} == {OutcomeKind.PAUSE_ACCOUNT}
    assert {o.code for o in outcomes} == {"api_disabled"}
    assert all("no call made" in o.reason for o in outcomes)
    assert sum(sim.state.calls.values()) == calls


async def test_billed_figures_are_the_gateways(rig: tuple[Simulator, C123Output]) -> None:
    """Segments and cost come from the answer's total and price, not the bridge's estimate;
    one SMS that two jobs came to is billed once."""
    sim, output = rig
    long_text = "长" * 100  # two segments with the signature
    outcomes = await output.deliver(
        jobs(
            ("15102110086", long_text),
            ("15102110087", long_text),
            ("+8615102110087", long_text),  # the same SMS as the job before
            ("15102110088", "short"),
        )
    )
    billed = {m.mobile: m.segments for m in sim.state.messages}
    assert [o.segments for o in outcomes] == [
        billed["15102110086"],
        billed["15102110087"],
        0,
        billed["15102110088"],
    ]
    assert [o.cost for o in outcomes] == [o.segments * Decimal("0.10") for o in outcomes]
    assert sum(o.cost for o in outcomes) == Decimal(100) - sim.state.account().balance


async def test_lost_answer_is_unknown(rig: tuple[Simulator, C123Output]) -> None:
    """When the gateway took the send but the answer was lost, the job is unknown, not failed."""
    sim, output = rig
    sim.state.add_fault(Fault(FaultKind.ACCEPT_THEN_DROP, action=Action.SEND_ONCE))
    (outcome,) = await output.deliver(jobs(("15102110086", "x")))
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert outcome.code == "ConnectionDroppedError"
    assert len(sim.state.messages) == 1


async def test_split_gives_one_unit_per_gateway_call(rig: tuple[Simulator, C123Output]) -> None:
    """A claimed batch is cut into one unit per call, so a crash can repeat one call at most."""
    _, output = rig
    batch = jobs(
        *((f"139{n:08d}", f"own {n}") for n in range(150)),
        ("12345", "bad number"),
    )
    units = output.split(batch)
    assert sorted(len(unit) for unit in units) == [1, 50, 100]
    assert sorted(job.id for unit in units for job in unit) == [job.id for job in batch]
    (alone,) = [unit for unit in units if len(unit) == 1]
    assert alone[0].recipient == "12345"


async def test_jobs_of_a_template_go_by_send_param(rig: tuple[Simulator, C123Output]) -> None:
    """Jobs naming a template and their values are one sendParam call; each phone gets its
    own text and each job its own msgid."""
    sim, output = rig
    names = ["王伟", "Li", "Ann"]
    batch = [
        Job(
            id=i,
            recipient=f"1510211008{i}",
            text=f"Dear {name}, ok",
            payload={"template": "Dear {p1}, ok", "params": {"p1": name}},
        )
        for i, name in enumerate(names)
    ]
    assert [len(unit) for unit in output.split(batch)] == [3]
    outcomes = await output.deliver(batch)
    assert all(o.kind is OutcomeKind.SENT for o in outcomes)
    assert sim.state.calls == {"getBalance": 1, "sendParam": 1}
    got = {m.mobile: (m.content, m.msgid, m.action) for m in sim.state.messages}
    for job, outcome in zip(batch, outcomes, strict=True):
        assert got[job.recipient][0].startswith(job.text)
        assert got[job.recipient][1:] == (outcome.ref, Action.SEND_PARAM)
