"""Sensor severities: ipmitool's threshold statuses and discrete event states."""

from __future__ import annotations

NOMINAL, WARNING, CRITICAL = 0, 1, 2

# Threshold status: `sensor` prints nc/cr/nr, `sdr elist` the lower/upper forms.
THRESHOLD_STATES = {
    "ok": NOMINAL,
    "nc": WARNING,
    "lnc": WARNING,
    "unc": WARNING,
    "cr": CRITICAL,
    "lcr": CRITICAL,
    "ucr": CRITICAL,
    "nr": CRITICAL,
    "lnr": CRITICAL,
    "unr": CRITICAL,
}

# Asserted discrete states (ipmitool's generic and sensor-specific event strings, lower
# case) that mean trouble; every other state is nominal.
DISCRETE_SEVERITY = {
    **dict.fromkeys(
        (
            "failure detected",
            "power supply ac lost",
            "ac lost or out-of-range",
            "ac lost",
            "redundancy lost",
            "non-redundant: insufficient resources",
            "drive fault",
            "in critical array",
            "in failed array",
            "ierr",
            "thermal trip",
            "frb1/bist failure",
            "frb2/hang in post failure",
            "frb3/processor startup/init failure",
            "sm bios uncorrectable cpu-complex error",
            "uncorrectable machine check exception",
            "uncorrectable ecc",
            "parity",
            "memory scrub failed",
            "critical overtemperature",
            "soft-power control failure",
            "transition to critical from less severe",
            "transition to non-recoverable from less severe",
            "transition to critical from non-recoverable",
            "transition to non-recoverable",
            "bus uncorrectable error",
            "fatal nmi",
            "bus fatal error",
            "undetermined system hardware failure",
            "run-time critical stop",
        ),
        CRITICAL,
    ),
    **dict.fromkeys(
        (
            "predictive failure",
            "predictive failure asserted",
            "ac out-of-range, but present",
            "config error",
            "configuration error",
            "power supply inactive",
            "redundancy degraded",
            "redundancy degraded from fully redundant",
            "redundancy degraded from non-redundant",
            "non-redundant: sufficient from redundant",
            "non-redundant: sufficient from insufficient",
            "rebuild aborted",
            "correctable ecc",
            "correctable ecc logging limit reached",
            "memory device disabled",
            "throttled",
            "correctable machine check error",
            "transition to non-critical from ok",
            "transition to non-critical from more severe",
            "transition to degraded",
            "install error",
            "limit exceeded",
            "performance lags",
            "general chassis intrusion",
            "drive bay intrusion",
            "i/o card area intrusion",
            "processor area intrusion",
            "fan area intrusion",
            "bus correctable error",
            "bus degraded",
            "log almost full",
            "log full",
            "fault status",
        ),
        WARNING,
    ),
}


def discrete_severity(states: str) -> int:
    """Worst severity among comma-separated asserted states (unknown states are nominal)."""
    parts = [p.strip().lower() for p in states.split(", ") if p.strip()]
    return max((DISCRETE_SEVERITY.get(p, NOMINAL) for p in parts), default=NOMINAL)
