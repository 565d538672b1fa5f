"""Lint, format and strict typing are part of the test suite, so one command checks everything."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import plait

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "src", "tests", "benchmarks", "examples"],
        ["ruff", "format", "--check", "src", "tests", "benchmarks", "examples"],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_tool_passes(command: list[str], request: pytest.FixtureRequest) -> None:
    if command == ["mypy"]:  # started at collection, beside the other tests (tests/conftest.py)
        proc = request.getfixturevalue("mypy_run")
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output
        return
    done = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_public_names_are_pinned() -> None:
    assert sorted(plait.__all__) == sorted(
        [
            "Approval",
            "ApprovalPolicy",
            "RunFilter",
            "FailedStepPage",
            "FailedStep",
            "FailureFilter",
            "FailureRetry",
            "FailureRetryItem",
            "BulkResult",
            "BulkItem",
            "Artifact",
            "ArtifactNotFound",
            "ArtifactRef",
            "BlobNotFound",
            "BlobStats",
            "CaughtError",
            "ChildFailed",
            "ConfigError",
            "DeclarationError",
            "DefinitionError",
            "DoctorCheck",
            "Engine",
            "Store",
            "register_store",
            "Event",
            "Goto",
            "Handle",
            "Inspection",
            "InputError",
            "Permanent",
            "PlaitError",
            "Queue",
            "Rate",
            "Retry",
            "Record",
            "RecordPage",
            "Records",
            "Retryable",
            "RevisionConflict",
            "Run",
            "RunCancelled",
            "RunConflict",
            "RunFailed",
            "RunHandle",
            "RunNotFound",
            "RunPage",
            "RunStateError",
            "RunStatus",
            "Schedule",
            "SchemaVersionError",
            "ServedWorkflow",
            "SessionState",
            "State",
            "StateError",
            "StateNotFound",
            "StatePage",
            "States",
            "Step",
            "StepCancelled",
            "StepContext",
            "StepError",
            "StepFailed",
            "StepSkipped",
            "StepStatus",
            "StepTopology",
            "StoreError",
            "Topology",
            "Waiting",
            "WorkerInfo",
            "Workflow",
            "WorkflowInfo",
            "WorkflowNotFound",
            "__version__",
            "action",
            "load",
            "loads",
        ]
    )
    for name in plait.__all__:
        assert hasattr(plait, name), name


def test_every_error_derives_from_plait_error() -> None:
    for name in plait.__all__:
        obj = getattr(plait, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, Exception)
            and name.endswith(("Error", "Found", "Failed", "Cancelled", "Conflict"))
        ):
            assert issubclass(obj, plait.PlaitError), name


def test_no_pickle_anywhere_in_the_package() -> None:
    for path in (ROOT / "src" / "plait").rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "pickle." not in text, path


def test_the_docs_link_only_to_files_in_the_repository() -> None:
    """The docs a user needs live in the repository: every relative link of the README and of
    docs/ (a markdown link, or a path in backquotes ending in .md) resolves to a file here."""
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        targets = re.findall(r"\]\(([^)#\s]+)", text) + re.findall(r"`([^`\s]+\.md)`", text)
        for target in targets:
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (page.parent / target).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []
    assert (ROOT / "docs" / "concepts.md").exists()
