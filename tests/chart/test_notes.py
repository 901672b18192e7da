"""The install notes tell what was installed and, on request, the Argo CD health check."""

from __future__ import annotations

import yaml

from .rendering import CHART, COMBINATIONS, render


def test_notes_name_the_opt_in_label_and_what_happens_while_the_operator_is_down() -> None:
    notes = render().notes
    assert "kubectl label deployment <name> stagecraft.dev/gate=enabled" in notes
    assert "refused (failurePolicy Fail)" in notes
    assert "helm show crds" in notes


def test_notes_carry_the_argo_cd_health_check_from_the_charts_lua_file() -> None:
    notes = render(COMBINATIONS["argocd-notes"]).notes
    snippet = notes[notes.index("data:") :]
    data = yaml.safe_load(snippet)["data"]
    script = data["resource.customizations.health.stagecraft.dev_DatabaseMigration"]
    assert script == (CHART / "files" / "argocd-health.lua").read_text()
    assert "resource.customizations.health" not in render().notes
