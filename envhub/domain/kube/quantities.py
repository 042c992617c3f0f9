"""Kubernetes resource quantities ("500m", "2Gi", "1e3") as exact numbers.

Clamping a user's quota to the platform's maxima must compare "1500m" with "2"
and "1G" with "1Gi" correctly; comparing strings or floats does not. Values are
parsed to :class:`fractions.Fraction` so no rounding ever changes a comparison.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

# The grammar of k8s.io/apimachinery/pkg/api/resource: a signed decimal number
# followed by a binary-SI suffix, a decimal-SI suffix or a decimal exponent.
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exponent>[+-]?[0-9]+))?$"
)
_MULTIPLIERS: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}


def parse_quantity(text: str) -> Fraction:
    """The exact value of a Kubernetes quantity: ``"500m"`` -> 1/2, ``"1Ki"`` -> 1024.

    Raises :class:`ValueError` for anything the API server would not accept.
    """
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 500m, 1, 256Mi, 2Gi)")
    number = Fraction(Decimal(match["number"]))
    exponent = match["exponent"]
    if exponent is not None:
        # Bounded so "1e999999999" cannot make us build an enormous integer.
        if abs(int(exponent)) > 30:
            raise ValueError(f"{text!r}: exponent out of range")
        return number * Fraction(10) ** int(exponent)
    return number * _MULTIPLIERS[match["suffix"] or ""]


def clamp_quantity(value: str, maximum: str) -> str:
    """``value`` if it is at most ``maximum``, else ``maximum`` (both as written)."""
    return value if parse_quantity(value) <= parse_quantity(maximum) else maximum


def smallest_quantity(first: str, *others: str) -> str:
    """The smallest of the quantities, as written; the first wins a tie (stable output)."""
    best = first
    for other in others:
        if parse_quantity(other) < parse_quantity(best):
            best = other
    return best
