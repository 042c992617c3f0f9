"""Quantity parsing and the clamping of a project's quota to the platform's maxima."""

from __future__ import annotations

from fractions import Fraction

import pytest

from envhub.domain.kube import PlatformLimits, clamp_quantity, clamp_quota, parse_quantity
from envhub.domain.kube.quantities import smallest_quantity
from envhub.domain.workloads import QuotaSpec
from envhub.errors import ConfigurationError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Fraction(1)),
        ("500m", Fraction(1, 2)),
        ("1500m", Fraction(3, 2)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("2.", Fraction(2)),
        ("1k", Fraction(1000)),
        ("1Ki", Fraction(1024)),
        ("128Mi", Fraction(128 * 2**20)),
        ("1.5Gi", Fraction(3 * 2**29)),
        ("2Ti", Fraction(2 * 2**40)),
        ("1M", Fraction(10**6)),
        ("1G", Fraction(10**9)),
        ("1T", Fraction(10**12)),
        ("1E", Fraction(10**18)),
        ("1e3", Fraction(1000)),
        ("25E-1", Fraction(5, 2)),
        ("100n", Fraction(1, 10**7)),
        ("+3", Fraction(3)),
        (" 2Gi ", Fraction(2 * 2**30)),
    ],
)
def test_parses_kubernetes_quantities_exactly(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["", "Gi", "1 Gi", "1gi", "1GB", "1KiB", "--1", "1.2.3", "0x10", "1e999", "abc"]
)
def test_refuses_what_the_api_server_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"quantity|exponent"):
        parse_quantity(text)


def test_binary_and_decimal_suffixes_compare_by_value() -> None:
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert parse_quantity("1000Mi") < parse_quantity("1Gi")
    assert parse_quantity("1024Mi") == parse_quantity("1Gi")


def test_clamp_keeps_the_value_as_written() -> None:
    assert clamp_quantity("1500m", "2") == "1500m"
    assert clamp_quantity("2000m", "2") == "2000m"  # equal is not above
    assert clamp_quantity("2001m", "2") == "2"
    assert clamp_quantity("17G", "16Gi") == "17G"  # 17e9 < 16 * 2**30
    assert clamp_quantity("18G", "16Gi") == "16Gi"
    assert smallest_quantity("1Gi", "1024Mi", "2Gi") == "1Gi"  # ties keep the first


def test_a_quota_within_limits_is_unchanged() -> None:
    quota = QuotaSpec()
    assert clamp_quota(quota, PlatformLimits()) == (quota, ())


def test_a_quota_above_limits_is_clamped_and_reported() -> None:
    asked = QuotaSpec(
        cpu="20", memory="100Gi", cpu_limit="40000m", memory_limit="1Ti", pods=500, storage="1Ti"
    )
    clamped, changed = clamp_quota(asked, PlatformLimits())
    assert (clamped.cpu, clamped.cpu_limit, clamped.memory, clamped.memory_limit) == (
        "8",
        "8",
        "16Gi",
        "16Gi",
    )
    assert (clamped.pods, clamped.storage) == (50, "100Gi")
    assert changed == ("cpu", "memory", "cpu_limit", "memory_limit", "pods", "storage")


def test_container_defaults_stay_consistent_after_clamping() -> None:
    # The API server rejects a LimitRange whose default request exceeds its default limit.
    limits = PlatformLimits(cpu="1", memory="1Gi", container_cpu="500m", container_memory="256Mi")
    asked = QuotaSpec(
        default_cpu="2", default_cpu_limit="3", default_memory="2Gi", default_memory_limit="4Gi"
    )
    clamped, changed = clamp_quota(asked, limits)
    assert (clamped.default_cpu_limit, clamped.default_cpu) == ("500m", "500m")
    assert (clamped.default_memory_limit, clamped.default_memory) == ("256Mi", "256Mi")
    assert {"default_cpu", "default_cpu_limit", "default_memory", "default_memory_limit"} <= set(changed)


def test_platform_limits_refuse_nonsense() -> None:
    with pytest.raises(ConfigurationError, match="cpu"):
        PlatformLimits(cpu="lots")
    with pytest.raises(ConfigurationError, match="memory"):
        PlatformLimits(memory="0")
    with pytest.raises(ConfigurationError, match="pods"):
        PlatformLimits(pods=-1)
    with pytest.raises(ConfigurationError, match="pod_security"):
        PlatformLimits(pod_security="strict")
