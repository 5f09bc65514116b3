"""The collector toolkit: running tools, typed options, durations, per-device fan-out."""
