"""What the comparative benchmarks share: one worker process per tool (a tool's patches are
process-wide), and rounds that alternate the tools so that drift hits them all alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator


def run_worker(script: str, tool: str, options: list[str]) -> dict[str, float]:
    """Run ``script --worker OPTIONS`` for ``tool``; its last line of output is JSON."""
    # One hash seed for every worker: dict and set layouts then differ between processes by
    # the tool alone, which narrows the process-to-process noise.
    env = {**os.environ, "BENCH_TOOL": tool, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    command = [sys.executable, script, "--worker", *options]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def alternating_rounds(
    count: int, tools: list[str], run: Callable[[str], dict[str, float]]
) -> Iterator[dict[str, dict[str, float]]]:
    """Each round's figures per tool, "none" included: first in even rounds, last in odd."""
    for number in range(count):
        order = ["none", *tools] if number % 2 == 0 else [*reversed(tools), "none"]
        yield {tool: run(tool) for tool in order}
