"""Beside a daemon that embeds the simulator (`./dev demo`), `send` and `balance` use that
simulator, the one whose phones the tour reads, instead of starting one of their own."""

from __future__ import annotations

import socket
from pathlib import Path

from bridge.plugins.c123.simulator import Simulator
from bridge.testing import quick_simulator_settings
from tests.commands.test_history import ALICE, smsbridge


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_send_and_balance_use_the_running_demos_simulator(tmp_path: Path) -> None:
    port = free_port()
    demo = Simulator(quick_simulator_settings())
    await demo.start(host="127.0.0.1", port=port)
    try:
        config = tmp_path / "c.yaml"
        config.write_text(f"simulator: {{port: {port}}}\nstore: {{path: {tmp_path / 's'}}}\n")
        code, _, err = await smsbridge("balance", "-c", str(config))
        assert (code, err) == (0, ""), err
        assert demo.state.calls["getBalance"] == 2  # the key's proof, then the balance
        code, _, err = await smsbridge("send", "-c", str(config), "--to", ALICE, "hi")
        assert code == 0, err
        assert [(m.mobile, m.content[:2]) for m in demo.state.messages] == [(ALICE, "hi")]

        # Nobody on the configured port: a simulator of its own, as before.
        config.write_text(f"simulator: {{port: {free_port()}}}\n")
        code, _, err = await smsbridge("send", "-c", str(config), "--to", ALICE, "again")
        assert code == 0, err
        assert "gateway_simulator_embedded" in err
        assert len(demo.state.messages) == 1
    finally:
        await demo.stop()
