"""The latest Deployments the watch delivered, as event-driven reconciles read them."""

from __future__ import annotations

from stagecraft.operator.seen import LatestSeen


def test_the_latest_version_stored_is_the_one_read_until_forgotten() -> None:
    seen = LatestSeen()
    assert seen.get("shop", "shop-api") is None
    seen.store("shop", "shop-api", {"metadata": {"resourceVersion": "1"}})
    seen.store("shop", "shop-api", {"metadata": {"resourceVersion": "2"}})
    seen.store("blog", "shop-api", {"metadata": {"resourceVersion": "9"}})

    read = seen.get("shop", "shop-api")
    assert read == {"metadata": {"resourceVersion": "2"}}
    assert read is not None
    read["spec"] = {}  # a reader's own top level: what is stored stays as delivered
    assert seen.get("shop", "shop-api") == {"metadata": {"resourceVersion": "2"}}

    seen.forget("shop", "shop-api")
    assert seen.get("shop", "shop-api") is None
    assert len(seen) == 1
