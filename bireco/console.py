"""The console scripts' shared policy: their environment, and how a user error ends them (one line, exit 2)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from bireco.errors import user_error_in


def console_environment() -> None:
    """The console scripts' one environment policy. Hub access (`HF_*`) is never touched: the hub works where it
    is reachable, and offline machines say so themselves (`HF_HUB_OFFLINE=1`, as the Makefile and tests do)."""
    # tokenizers' thread pool warns (and can deadlock) once a DataLoader forks; bireco batches in one process
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def user_error_line(exc: BaseException) -> str | None:
    """The one line a user error ends with, or None when `exc` is not the user's to fix (a bug keeps its traceback).

    A required setting left unset (`???` in the config, e.g. `bireco-encode`'s `model_dir`) is one too: OmegaConf
    raises it where the job first reads the key, so it names the key."""
    from omegaconf.errors import MissingMandatoryValue

    err = user_error_in(exc)
    if err is not None:
        return str(err)
    if isinstance(exc, MissingMandatoryValue):
        return f"{exc.full_key}= is required (the config has no default for it)"
    return None


def exit_on_user_error(exc: BaseException, program: str) -> None:
    """A user error ends the program with its one line on stderr (exit status 2); anything else propagates."""
    line = user_error_line(exc)
    if line is not None:
        fail(program, line)


def fail(program: str, message: str) -> NoReturn:
    """End `program` with a user error: `PROGRAM: error: MESSAGE` on stderr, exit status 2 (as argparse does)."""
    print(f"{program}: error: {message}", file=sys.stderr)
    raise SystemExit(2) from None


def one_line(message: str) -> str:
    """Hydra's multi-line message as one line: a heading's list joined by commas, the search path dropped."""
    lines = [line.strip() for line in message.split("Config search path:")[0].splitlines() if line.strip()]
    out, listing = lines[0] if lines else "", False
    for line in lines[1:]:
        if out.endswith(":"):
            out, listing = f"{out} {line}", True
        else:
            out += (", " if listing else " " if out.endswith(".") else "; ") + line
    return out
