"""Under CI=true, a test skipped for want of a required dependency (redis-server, ../shared/data) fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from scorer.paths import shared_data_dir

TESTS = f"""
import pytest

@pytest.mark.skipif(True, reason="redis-server is not installed")
def test_needs_redis():
    pass

def test_needs_shared_data():
    pytest.skip("labelled data not found in {shared_data_dir() / "nsl_kdd_ocsf"}")

def test_skips_for_another_reason():
    pytest.skip("not on this platform")
"""


# the inner run: in this process, one by one, without the outer run's ini
ARGS = ("-p", "no:xdist", "-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function")


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_skips=TESTS)
    return pytester


def test_a_missing_required_dependency_fails_under_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest(*ARGS)
    result.assert_outcomes(errors=1, failed=1, skipped=1)  # the skipif marker acts at setup: an error
    result.stdout.fnmatch_lines(["*CI=true: a required dependency is missing: *redis-server*"])


@pytest.mark.parametrize("ci", [None, "false"])
def test_elsewhere_it_skips(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    suite.runpytest(*ARGS).assert_outcomes(skipped=3)
