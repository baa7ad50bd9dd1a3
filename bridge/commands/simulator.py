"""`smsbridge simulator`: run the c123 gateway simulator, or inject a reply into a running one."""

from __future__ import annotations

import argparse
import json
import sys

import aiohttp

from bridge.commands.common import EXIT_OK, EXIT_REFUSED


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `simulator` and its `reply` subcommand."""
    sim = subparsers.add_parser(
        "simulator",
        help="run the built-in c123 gateway simulator",
        description=(
            "Run a c123 gateway simulator: every action, result code, limit, billing, delivery "
            "reports and injectable replies. Point gateway.base_url at the URL it prints."
        ),
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sim.add_argument(
        "--port", type=int, default=8123, help="port (default 8123; 0 picks a free one)"
    )
    sim.add_argument(
        "--report-delay",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long after a send its delivery report is ready (default 1)",
    )
    sim.set_defaults(handler=cmd_simulator, long_running=True)
    actions = sim.add_subparsers(dest="sim_action", metavar="{reply}")
    reply = actions.add_parser(
        "reply",
        help="inject an inbound reply into a running simulator",
        description="Make a phone 'reply': the next getReply returns this text.",
    )
    reply.add_argument("--url", default="http://127.0.0.1:8123", help="the simulator's base URL")
    reply.add_argument("--from", dest="mobile", required=True, metavar="NUMBER", help="the phone")
    reply.add_argument("text", help="the reply text")
    reply.set_defaults(handler=cmd_inject_reply)


async def cmd_simulator(args: argparse.Namespace) -> int:
    # Imported here: the daemon's own command line should not load the simulator.
    from bridge.plugins.c123.simulator import SimulatorSettings, serve

    await serve(args.host, args.port, SimulatorSettings(report_delay=args.report_delay))
    return EXIT_OK


async def cmd_inject_reply(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + "/_sim/replies"
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(
                url, json={"mobile": args.mobile, "content": args.text}
            ) as resp:
                body = await resp.text()
                if resp.status >= 400:
                    print(f"simulator refused the reply ({resp.status}): {body}", file=sys.stderr)
                    return EXIT_REFUSED
        except aiohttp.ClientError as exc:
            print(f"cannot reach the simulator at {args.url}: {exc}", file=sys.stderr)
            return EXIT_REFUSED
    print(
        json.dumps({"ok": True, "queued": json.loads(body) if body else None}, ensure_ascii=False)
    )
    return EXIT_OK
