"""Runs code against the official `tensorflow-serving-api` package in a child process.

Our generated modules and the official ones register the same protobuf full names
(`tensorflow.TensorProto`, `tensorflow.serving.PredictRequest`, ...) in the default
descriptor pool, so the two can never be imported into one process: every use of the
official package goes through `run_official`, which returns the script's JSON output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

_QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "TF_ENABLE_ONEDNN_OPTS": "0"}


def run_official(script: str, *, stdin: str = "", timeout: float = 120.0) -> Any:
    """Runs `script` (which must print one JSON document last) in a fresh interpreter."""
    env = {**os.environ, **_QUIET_TF}
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"official client script failed ({completed.returncode}):\n{completed.stderr[-4000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])
