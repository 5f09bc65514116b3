"""Remote BMCs over IPMI 2.0 (RMCP+): the ipmi collector's sub-commands, run against a target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from prometheus_client.metrics_core import Metric

from collectors.base import CollectorContext, CollectorError, NotApplicable
from collectors.ipmi import IpmiCollector
from collectors.toolkit.fanout import Budget
from collectors.toolkit.remote import Credential, LoginModule, RemoteTarget
from collectors.toolkit.runner import CommandResult

DEFAULT_PORT = 623  # RMCP
# ipmitool's stderr noise on BMCs without HPM.x support (ipmi_sim, many others).
NOISE = ("Get HPM.x Capabilities request failed",)
SESSION_HINT = (
    "no RMCP+ session with {target}: wrong user name or password, a privilege level above "
    "the user's, a cipher suite the BMC does not offer, or no BMC answering there"
)


class IpmiSettings(Protocol):
    """The ``ipmi`` driver's own settings of a module."""

    @property
    def privilege(self) -> str:
        """ipmitool -L: USER, OPERATOR or ADMINISTRATOR."""
        ...

    @property
    def cipher_suite(self) -> int | None:
        """ipmitool -C; None lets ipmitool choose."""
        ...

    @property
    def sensor_source(self) -> str:
        """``sdr`` (sdr elist) or ``sensor``."""
        ...

    @property
    def dcmi(self) -> bool:
        """Whether DCMI power is read."""
        ...

    @property
    def sel(self) -> bool:
        """Whether SEL usage is read."""
        ...


class IpmiLanCollector(IpmiCollector):
    """One BMC over ``ipmitool -I lanplus``; the password reaches ipmitool only by -E."""

    def __init__(
        self,
        ctx: CollectorContext,
        target: RemoteTarget,
        username: Credential,
        password: Credential,
        settings: IpmiSettings,
    ) -> None:
        options = {
            "source": settings.sensor_source,
            "dcmi": str(settings.dcmi).lower(),
            "sel": str(settings.sel).lower(),
        }
        super().__init__(replace(ctx, options=options))
        self.target = target
        self.username = username
        self.password = password
        self.settings = settings
        self._session: tuple[list[str], dict[str, str]] | None = None

    @property
    def address(self) -> str:
        """``host:port`` for messages."""
        return f"{self.target.host}:{self.target.port or DEFAULT_PORT}"

    async def collect(self) -> Sequence[Metric]:
        """Read the credentials (once per poll), then run the ipmi collector's sub-commands."""
        try:
            user, password = self.username.read(), self.password.read()
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CollectorError(f"cannot read the credentials: {reason}") from None
        options = [
            "-I",
            "lanplus",
            "-H",
            self.target.host,
            "-p",
            str(self.target.port or DEFAULT_PORT),
        ]
        options += ["-U", user, "-L", self.settings.privilege]
        if self.settings.cipher_suite is not None:
            options += ["-C", str(self.settings.cipher_suite)]
        # -E: ipmitool reads IPMI_PASSWORD; argv is world-readable in /proc, the environment
        # is not. (-f would read the password file itself, but not a password_env value.)
        self._session = ([*options, "-E"], {"IPMI_PASSWORD": password})
        try:
            return await super().collect()
        finally:
            self._session = None

    def _argv(self, args: list[str]) -> list[str]:
        if self._session is None:
            raise RuntimeError("ipmitool run outside a collection")
        return [*self._session[0], *args]

    def _env(self) -> dict[str, str] | None:
        return self._session[1] if self._session is not None else None

    def _what(self, args: list[str]) -> str:
        return f"ipmitool {' '.join(args)} ({self.address})"

    async def _run(self, args: list[str], budget: Budget) -> CommandResult:
        try:
            return await super()._run(args, budget)
        except NotApplicable as exc:  # no ipmitool: a failure for a configured remote module
            raise CollectorError(f"{self._what(args)}: {exc}") from exc

    def _failure(self, result: CommandResult) -> str:
        output = (result.stderr + result.stdout).decode(errors="replace")
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith(NOISE)]
        if any("Unable to establish IPMI v2 / RMCP+ session" in line for line in lines):
            raise CollectorError(SESSION_HINT.format(target=self.address))
        first = lines[0] if lines else "no output"
        return f"exit status {result.returncode}: {first[:200]}"


class IpmiModule(LoginModule, Protocol):
    """What the driver reads of a ``/probe`` module: a login and the ``ipmi`` settings."""

    @property
    def ipmi(self) -> IpmiSettings | None:
        """The ``ipmi`` driver's settings."""
        ...


def ipmi_driver(
    module: IpmiModule, target: RemoteTarget, ctx: CollectorContext
) -> IpmiLanCollector:
    """The ``ipmi`` driver: a collector for one target, running tools with ``ctx.runner``."""
    if module.ipmi is None:
        raise ValueError("not an ipmi module")
    ctx = replace(ctx, timeout=module.timeout)
    return IpmiLanCollector(ctx, target, module.username, module.password, module.ipmi)
