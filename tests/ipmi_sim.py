"""OpenIPMI's ipmi_sim as a test BMC on loopback UDP, and an ipmitool wrapper that logs runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO, running

SIM = REPO / "tests" / "fixtures" / "ipmi_sim"
USER, PASSWORD = "monitor", "s3cret-pass-7"
# An RMCP/ASF presence ping; a BMC (and ipmi_sim) answers with a pong.
ASF_PING = bytes.fromhex("0600ff06000011be80010000")
LAN_CONF = """name "hwcache-sim"
set_working_mc 0x20
  startlan 1
    addr {address} {port}
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  user 2 true "{user}" "{password}" user 10 md5
"""
# Logs each run's start and end (nanoseconds, arguments), running the real ipmitool between.
WRAPPER = """#!/bin/sh
printf 'start %s %s\\n' "$(date +%s%N)" "$*" >> "{log}"
"{real}" "$@"
status=$?
printf 'end %s %s\\n' "$(date +%s%N)" "$*" >> "{log}"
exit $status
"""


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def free_udp_port(address: str = "127.0.0.1") -> int:
    """An unused UDP port on a loopback ``address``."""
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def answers_ping(port: int, address: str = "127.0.0.1") -> bool:
    """Whether an RMCP presence ping to ``address``:``port`` gets a pong."""
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        sock.sendto(ASF_PING, (address, port))
        try:
            return sock.recv(512)[:4] == ASF_PING[:4]
        except OSError:
            return False


@dataclass(frozen=True)
class Run:
    """One logged ipmitool start or end."""

    event: str  # "start" or "end"
    at_ns: int
    args: str


@dataclass
class Ipmitool:
    """The logging wrapper, first on the PATH of ``env()``."""

    bin_dir: Path
    log: Path

    def events(self) -> list[Run]:
        """Every start and end so far, in order."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [Run(e, int(t), a) for e, t, a in (line.split(" ", 2) for line in lines)]

    def runs(self) -> list[str]:
        """The arguments of every run started so far."""
        return [run.args for run in self.events() if run.event == "start"]

    def env(self) -> dict[str, str]:
        """PATH with the wrapper first (ahead of the tests' fake ipmitool)."""
        return {"PATH": f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}"}


def logging_ipmitool(work: Path) -> Ipmitool:
    """Install the wrapper in ``work/bin``, logging to ``work/ipmitool-runs.log``."""
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = work / "ipmitool-runs.log"
    wrapper = bin_dir / "ipmitool"
    wrapper.write_text(WRAPPER.format(log=log, real=shutil.which("ipmitool")))
    wrapper.chmod(0o755)
    return Ipmitool(bin_dir, log)


@contextlib.contextmanager
def simulator(work: Path, address: str = "127.0.0.1") -> Iterator[int]:
    """ipmi_sim with tests/fixtures/ipmi_sim's sensors on a free UDP port (yielded) of a
    loopback ``address``."""
    port = free_udp_port(address)
    state = work / "state"
    (state / "ipmi_sim" / "hwcache-sim").mkdir(parents=True)
    sdr = state / "ipmi_sim" / "hwcache-sim" / "sdr.20.main"
    subprocess.run(["sdrcomp", "-o", str(sdr), str(SIM / "sim.sdrs")], check=True, timeout=30)
    conf = work / "lan.conf"
    conf.write_text(LAN_CONF.format(address=address, port=port, user=USER, password=PASSWORD))
    argv = ["ipmi_sim", "-c", str(conf), "-f", str(SIM / "sim.emu"), "-s", str(state), "-n"]
    with running(argv, work / "ipmi_sim.log", lambda: answers_ping(port, address), 30, "ipmi_sim"):
        yield port
