"""Security of what the chart deploys: the restricted Pod Security Standard, and checkov's
Kubernetes and Dockerfile checks with every accepted finding justified where it is accepted.

checkov has many pinned dependencies, so it lives in a virtualenv of its own
(tools/checkov/venv, made by `make checkov`, which `make test` runs first).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stagecraft.operator.manifests import NON_ROOT_USER  # the Jobs' and the image's user

from .rendering import COMBINATIONS, ROOT, render, render_templates

CHECKOV = ROOT / "tools" / "checkov" / "venv" / "bin" / "checkov"
# One worker runs the checkov tests, so the chart is scanned once.
pytestmark = pytest.mark.xdist_group("checkov")

# Findings on the Dockerfile that are accepted, with why. The Dockerfile can carry the same
# reason itself (`# checkov:skip=CKV_DOCKER_7:...`); either way the reason is written down.
DOCKERFILE_ACCEPTED = {
    "CKV_DOCKER_7": "FROM ${PYTHON_IMAGE}: checkov does not expand the ARG, which pins the base "
    "image by the tag 3.11.15-slim-bookworm and by digest",
}


def _checkov(*arguments: str) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `make checkov`")
    result = subprocess.run(
        [str(CHECKOV), *arguments, "--output", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Exit 1 means failed checks, which the tests report; anything else is checkov failing.
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _findings(report: dict[str, Any], outcome: str) -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = report.get("results", {}).get(outcome, [])
    return findings


def _describe(finding: dict[str, Any]) -> str:
    where = f"{finding['resource']} ({finding['file_path']})"
    return f"{finding['check_id']} {finding['check_name']} in {where}"


@pytest.fixture(scope="module")
def chart_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """checkov's report on every documented combination, each rendered into its own folder."""
    root = tmp_path_factory.mktemp("rendered")
    for combination, values in COMBINATIONS.items():
        folder = root / combination
        folder.mkdir()
        for path, text in render_templates(values).items():
            if path.endswith(".yaml") and text.strip():
                (folder / Path(path).name).write_text(text)
    return _checkov("--directory", str(root), "--framework", "kubernetes")


def test_checkov_finds_nothing_in_the_rendered_chart(chart_report: dict[str, Any]) -> None:
    report = chart_report
    failed = [_describe(finding) for finding in _findings(report, "failed_checks")]
    assert failed == []
    assert report["summary"]["passed"] > 0


def test_each_finding_the_chart_skips_says_why(chart_report: dict[str, Any]) -> None:
    skipped = _findings(chart_report, "skipped_checks")
    assert skipped, "the chart's checkov.io/skip annotations were not seen"
    for finding in skipped:
        reason = finding["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, _describe(finding)


def test_checkov_accepts_the_dockerfile_but_for_justified_findings() -> None:
    dockerfile = ROOT / "Dockerfile"
    report = _checkov("--file", str(dockerfile), "--framework", "dockerfile")
    failed = {finding["check_id"]: finding for finding in _findings(report, "failed_checks")}
    unexplained = [_describe(f) for check, f in failed.items() if check not in DOCKERFILE_ACCEPTED]
    assert unexplained == []
    for finding in _findings(report, "skipped_checks"):
        assert finding["check_result"].get("suppress_comment"), _describe(finding)
    assert report["summary"]["passed"] > 0


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_the_operator_pod_meets_the_restricted_pod_security_standard(combination: str) -> None:
    deployment = render(COMBINATIONS[combination]).one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == NON_ROOT_USER
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    assert all(set(volume) <= {"name", "emptyDir", "secret"} for volume in pod["volumes"])
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert context.get("privileged") is not True
        assert "ports" not in container or all("hostPort" not in p for p in container["ports"])
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        assert mounts["/tmp"] == "tmp"  # noqa: S108 - the one writable place on a read-only root
