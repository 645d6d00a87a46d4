"""Progress of a run: a bar in a terminal, a line per committed round anywhere else (CI logs, nohup, pipes)."""
from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm.auto import tqdm


class LineProgress:
    """tqdm's interface as the runner uses it, printing one line per update instead of redrawing a bar."""

    def __init__(self, total: int, initial: int = 0, stream: IO[str] | None = None) -> None:
        self.total, self.n = total, initial
        self.stream = stream or sys.stderr
        self.desc, self.start = "alkit", time.monotonic()

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix_str(self, _phase: str) -> None:
        pass  # phases within a round are not worth a line each

    def update(self, n: int = 1) -> None:
        if n <= 0:
            return
        self.n += n
        elapsed = time.monotonic() - self.start
        print(f"alkit: {self.n}/{self.total} rounds done ({elapsed:.0f} s): {self.desc}", file=self.stream,
              flush=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *_: object) -> None:
        pass


def progress_bar(total: int, initial: int, enabled: bool, stream: IO[str] | None = None) -> Any:
    """A tqdm bar when ``stream`` (stderr) is a terminal, else :class:`LineProgress`; a silent bar if not enabled."""
    stream = stream or sys.stderr
    if enabled and not stream.isatty():
        return LineProgress(total, initial, stream)
    return tqdm(total=total, initial=initial, desc="alkit", unit="round", disable=not enabled, dynamic_ncols=True,
                file=stream)
