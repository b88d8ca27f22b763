"""Custom tools for the runtime tests, loaded by import path as users' own tools are (not a test module)."""

from __future__ import annotations

NOT_A_FUNCTION = 42


def lookup(city: str, days: int = 1) -> dict[str, object]:
    """Look up the weather for a city.

    More text that is not part of the description.

    Args:
        city: The city, e.g. "Paris".
        days: How many days
            to look ahead.
    """
    return {"city": city, "days": days}


def calculator(expression: str) -> str:
    """A user tool that clashes with the built-in calculator's name."""
    return expression
