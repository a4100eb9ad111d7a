"""Example third-party OCAD plugin: the ``ptp_offset_ns`` metric and the ``ptp`` detector.

Install it (``pip install -e examples/ocad-plugin-example``) and OCAD finds it
through its ``ocad`` entry point; see the README for how it is written, tested
and shipped.
"""

from __future__ import annotations

from .detector import DEFAULT_CALIBRATION, PTP_OFFSET, PtpOffsetDetector

__version__ = "0.1.0"

__all__ = ["DEFAULT_CALIBRATION", "PTP_OFFSET", "PtpOffsetDetector"]
