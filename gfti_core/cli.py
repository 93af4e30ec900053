"""`gfti` — the standalone command line: train, sample, info, batch (arguments: cli_args.py)."""
from __future__ import annotations

import logging
import sys

from .cli_args import build_parser
from .config import ConfigError
from .errors import GFTIError

log = logging.getLogger("gfti")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    from . import cli_commands

    try:
        if args.command == "batch":
            from .batch import run_batch  # imports Ray: only this command needs it

            return run_batch(args)
        return {"train": cli_commands.train, "sample": cli_commands.sample, "info": cli_commands.info}[
            args.command](args)
    except (GFTIError, ConfigError) as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
