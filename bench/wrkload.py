"""Load from `wrk`, and server CPU per request from /proc, for the accept and full-path figures.

A Python load client saturates its own core before a bare aiohttp server does, so its req/s
ratio flatters the slower side. `wrk` (C, LuaJIT) does not: it keeps the server busy, and the
figure is the server process's CPU time (utime + stime of /proc/<pid>/stat, every thread,
finished ones included) per request it served, against the bare handler measured in the same run.

wrk is Debian's `wrk` package; `ensure_wrk` installs it with apt-get when run as root, else it
says how. Each request's body is a unique Alertmanager notification made by a small Lua script
from a template (the daemon de-duplicates, so a repeated body would be cheaper and flatter it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A template's holes, filled per request from the request's alert number n:
# @N@ its 8-digit decimal, @X@ its 16-digit hex, @T@ its team number (n mod teams).
HOLE = re.compile(r"@([NXT])@")
_TICK = os.sysconf("SC_CLK_TCK")


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package first where this process may (root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)  # noqa: S607
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)  # noqa: S607
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("this bench needs wrk: apt-get install wrk (Debian's package)")
    return found


def process_cpu(pid: int) -> float:
    """CPU seconds a process used so far, every thread included (utime + stime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the command: state is field 3; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICK


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def lua_script(template: str, headers: dict[str, str], teams: int) -> str:
    """A wrk script POSTing `template` with its holes filled from a counter per request.

    The counter starts at the script's first argument (`wrk ... -- FIRST`). At the end it
    prints one JSON line: requests completed, non-2xx answers and socket errors.
    """
    pieces = HOLE.split(template)  # text, hole, text, hole, ..., text
    parts = ", ".join(
        _lua_string(piece) if i % 2 == 0 else json.dumps(piece) for i, piece in enumerate(pieces)
    )
    header_lines = "\n".join(
        f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()
    )
    return f"""
wrk.method = "POST"
{header_lines}
local parts = {{{parts}}}
local teams = {teams}
local n = 0
local out = {{}}

function init(args)
  n = tonumber(args[1] or "0")
end

function request()
  n = n + 1
  for i = 1, #parts do
    local p = parts[i]
    if i % 2 == 1 then out[i] = p
    elseif p == "N" then out[i] = string.format("%08d", n)
    elseif p == "X" then out[i] = string.format("%016x", n)
    else out[i] = tostring(n % teams) end
  end
  return wrk.format(nil, nil, nil, table.concat(out))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests": %d, "non2xx": %d, "socket_errors": %d, "duration_us": %d, '
    .. '"latency_p50_us": %d, "latency_p99_us": %d}}\\n',
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True, slots=True)
class Load:
    """How wrk drives a server: one thread, `connections` keep-alive connections, `seconds`."""

    seconds: int = 4
    connections: int = 32
    cpus: frozenset[int] | None = None  # where wrk runs (not where the server does)


async def run_wrk(url: str, script: Path, first: int, load: Load) -> dict[str, Any]:
    """Run wrk against `url` with `script` (alert numbers from `first + 1` on); its figures."""
    argv = [
        ensure_wrk(),
        "-t1",
        f"-c{load.connections}",
        f"-d{load.seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        str(first),
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    if load.cpus is not None:
        os.sched_setaffinity(proc.pid, load.cpus)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {(out + err).decode()[-500:]}")
    last = out.decode().strip().splitlines()[-1]
    figures: dict[str, Any] = json.loads(last)
    if figures["non2xx"] or figures["socket_errors"]:
        raise RuntimeError(f"wrk saw failures against {url}: {figures}")
    return figures
