"""Errors worded for users, which every layer may raise and every caller (UI, API, CLI) shows as they are.

Owns: `StudioError` (bad input or a refused operation). Configuration problems are `ConfigError`
(studio.config) and backend failures `BackendError` (studio.backends); both are ValueErrors too.
Ignores: how a caller displays the message.
"""

from __future__ import annotations


class StudioError(ValueError):
    """Bad input or a refused operation, worded for the user."""
