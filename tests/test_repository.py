"""The repository itself: no source file is hidden from git (a clean clone, which CI tests,
would lack it) or from ruff (which skips git-ignored files)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("src", "tests", "benchmarks", "tools")


def _git(*args: str) -> list[str]:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


def _ours(paths: list[str]) -> list[str]:
    return [p for p in paths if "__pycache__" not in p and ".egg-info" not in p]


def test_no_source_file_is_git_ignored() -> None:
    present_but_ignored = _ours(_git("ls-files", "--others", "--ignored", "--exclude-standard",
                                     "--", *SOURCES))
    tracked_but_ignored = _git("ls-files", "--cached", "--ignored", "--exclude-standard",
                               "--", *SOURCES)
    assert not present_but_ignored, f"git ignores these source files: {present_but_ignored}"
    assert not tracked_but_ignored, f"tracked files match .gitignore: {tracked_but_ignored}"


def test_the_check_sees_an_ignored_file() -> None:
    """Negative control: a file matching an ignore pattern under src/ is reported."""
    probe = ROOT / "src" / "transferkit" / "__pycache__" / "probe.pyc"
    assert _git("check-ignore", str(probe.relative_to(ROOT))) == [
        str(probe.relative_to(ROOT))]
