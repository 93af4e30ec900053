"""What `gfti batch` shows: an overall bar, one bar per running concept, their log lines, and a final table."""
from __future__ import annotations

import logging

log = logging.getLogger("gfti")


class BatchProgress:
    """Driven by the tasks' events: ("start", {...}), ("generation", {...}), ("log", (level, message))."""

    def __init__(self, total: int, skipped: int) -> None:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._tqdm = tqdm
        self._redirect = logging_redirect_tqdm()  # log lines go above the bars instead of through them
        self.overall = tqdm(total=total, initial=skipped, desc="concepts", unit="concept", position=0)
        self.bars: dict[str, object] = {}
        self.slots: dict[str, int] = {}

    def __enter__(self) -> "BatchProgress":
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for token in list(self.bars):
            self._close(token)
        self.overall.close()
        self._redirect.__exit__(*exc)

    def event(self, token: str, kind: str, data) -> None:
        if kind == "start":
            self._start(token, data)
        elif kind == "generation" and token in self.bars:
            bar = self.bars[token]
            bar.update(data["generation"] - bar.n)
            bar.set_postfix(best=f"{data['best']:.5f}")
        elif kind == "log":
            level, message = data
            log.log(level, "%s: %s", token, message)

    def _start(self, token: str, data: dict) -> None:
        if token in self.bars:  # Ray restarted the concept after its worker died
            self._close(token)
        resumed = data["resumed"]
        log.info("%s: running on %s, pid %d%s", token, data["node"], data["pid"],
                 "" if resumed is None else f", resuming at generation {resumed}")
        slot = min(set(range(1, len(self.slots) + 2)) - set(self.slots.values()))
        self.slots[token] = slot
        self.bars[token] = self._tqdm(total=data["generations"], initial=resumed or 0, desc=token, unit="gen",
                                      position=slot, leave=False)

    def finished(self, result: dict) -> None:
        self._close(result["token"])
        self.overall.update(1)
        if result["status"] == "done":
            log.info("%s: finished in %.0f s, hold-out loss %.5f, %s", result["token"], result["seconds"],
                     result["holdout_loss"], result["file"])
        else:
            log.error("%s: failed: %s", result["token"], result["error"])

    def _close(self, token: str) -> None:
        bar = self.bars.pop(token, None)
        self.slots.pop(token, None)
        if bar is not None:
            bar.close()


def summary_table(results: list[dict]) -> str:
    """The end-of-batch table: concept, status, hold-out loss, seconds, file (or why it failed)."""
    rows = [("concept", "status", "hold-out loss", "seconds", "file")]
    for r in results:
        loss = f"{r['holdout_loss']:.5f}" if "holdout_loss" in r else "-"
        seconds = f"{r['seconds']:.0f}" if "seconds" in r else "-"
        rows.append((r["token"], r["status"], loss, seconds, r.get("file") if r["status"] != "failed" else r["error"]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    return "\n".join(lines)
