"""Where a run comes from: the git commit and, under ``dvc exp run``, the DVC experiment.

Every run and model version the pipeline creates carries these tags, so an MLflow run leads
back to its DVC experiment (``dvc exp show`` shows the MLflow run ids the other way).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Set by `dvc exp run` for every stage command (dvc/repo/experiments/queue/base.py, DVC 3.x),
# for workspace and queued/temporary runs alike; absent under plain `dvc repro`.
DVC_ENV_TAGS = {"DVC_EXP_NAME": "dvc_experiment", "DVC_EXP_BASELINE_REV": "dvc_baseline_rev"}


def git_commit(cwd: Path | None = None) -> str | None:
    """The repository's HEAD commit, or None outside a git checkout (or without git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path.cwd(), capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def context_tags() -> dict[str, str]:
    """``dvc_experiment`` and ``dvc_baseline_rev`` of the DVC experiment running us, when there is one."""
    return {tag: os.environ[env] for env, tag in DVC_ENV_TAGS.items() if os.environ.get(env)}
