"""The chart installs the very CRD the operator's models generate, and kopf's peering CRDs."""

from __future__ import annotations

from .rendering import CHART, ROOT, chart_crds


def test_the_charts_crd_is_the_generated_file_byte_for_byte() -> None:
    generated = ROOT / "crds" / "databasemigrations.stagecraft.dev.yaml"
    copy = CHART / "crds" / generated.name
    assert copy.read_bytes() == generated.read_bytes(), "run `make crds` to refresh the copy"


def test_the_chart_ships_the_peering_crds_kopf_looks_for() -> None:
    names = {crd["metadata"]["name"] for crd in chart_crds()}
    # kopf/_cogs/structs/references.py: CLUSTER_PEERINGS_K and NAMESPACED_PEERINGS_K.
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= names
    assert names == {
        "databasemigrations.stagecraft.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
