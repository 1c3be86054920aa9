"""Publish lanes: each lane is its own consumer group and serves only its targets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cayg_publish.settings import PublishSettings

pytestmark = pytest.mark.unit


def test_without_a_lane_one_group_serves_every_target() -> None:
    settings = PublishSettings()
    assert settings.consumer_group == "cayg-publish"
    assert settings.serves("northfield-cc-registry")
    assert settings.serves("anything")


def test_a_lane_has_its_own_group_and_targets() -> None:
    settings = PublishSettings(lane="clr", lane_targets=("*-clr", "partner-ob"))
    assert settings.consumer_group == "cayg-publish.clr"
    assert settings.serves("northfield-cc-clr")
    assert settings.serves("partner-ob")
    assert not settings.serves("northfield-cc-registry")


def test_a_lane_needs_both_a_name_and_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError):
        PublishSettings(lane="clr")
    with pytest.raises(ValidationError):
        PublishSettings(lane_targets=("*-clr",))
    monkeypatch.setenv("CAYG_PUBLISH_LANE", "registry")
    monkeypatch.setenv("CAYG_PUBLISH_LANE_TARGETS", '["*-registry"]')
    from_env = PublishSettings()
    assert from_env.consumer_group == "cayg-publish.registry"
