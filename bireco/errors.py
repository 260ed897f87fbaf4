"""User errors (bad config, data row, missing file, unreachable hub): one line, no traceback, non-zero exit.

Everything else is an internal error and keeps its traceback. The console scripts catch `UserError` anywhere in
an exception's chain (a stage wraps what failed in it), so a typo costs one readable line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def offline_hint() -> str:
    """What makes a load work without the hub, worded for whether offline mode is already on."""
    cache = "the Hugging Face cache (HF_HOME, default ~/.cache/huggingface)"
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return (
            f"HF_HUB_OFFLINE is set, so only {cache} is searched: fill it where the hub is reachable "
            "(`hf download <name>`), or give a local folder in the Hugging Face layout instead of a hub name"
        )
    return (
        "where the hub is unreachable, give a local folder in the Hugging Face layout instead of a hub name, or set "
        f"HF_HUB_OFFLINE=1 (HF_DATASETS_OFFLINE=1 for data sets) to use {cache} without retrying the network"
    )


class UserError(Exception):
    """A problem with what the user gave bireco, fixable without reading bireco's code."""


class HubUnreachable(UserError):
    """A model, tokenizer or data set could not be fetched from the Hugging Face Hub (nor found in its cache)."""


def user_error_in(exc: BaseException) -> UserError | None:
    """The first `UserError` in `exc`'s chain of causes, if any."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, UserError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _hub_reason(exc: BaseException) -> str | None:
    """Why a hub load failed, when it is the hub (not a bug): unreachable, not cached offline, gated, unknown."""
    from huggingface_hub import errors

    reasons = (
        (errors.OfflineModeIsEnabled, "offline mode is on and it is not in the local cache"),
        (errors.LocalEntryNotFoundError, "the hub is unreachable or offline, and it is not in the local cache"),
        (errors.GatedRepoError, "the repository is gated: accept its licence on the hub and log in (`hf auth login`)"),
        (errors.RepositoryNotFoundError, "no such repository on the hub (or no access to it)"),
        (errors.RevisionNotFoundError, "no such revision in the repository"),
        (errors.HFValidationError, "neither an existing folder nor a hub name ('namespace/name')"),
        (ConnectionError, "the hub is unreachable or offline, and it is not in the local cache"),  # datasets' own
    )
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        for cls, reason in reasons:
            if isinstance(e, cls):
                return reason
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    text = str(exc)
    if "couldn't connect to" in text or "offline mode" in text.lower():
        return "the hub is unreachable or offline, and it is not in the local cache"
    return None


@contextmanager
def hub_access(what: str) -> Iterator[None]:
    """Turn a hub failure inside the block into one `HubUnreachable` line naming `what` (e.g. "model 'x'")."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        reason = _hub_reason(e)
        if reason is None:
            raise
        raise HubUnreachable(f"cannot load {what}: {reason}; {offline_hint()}") from e


class ConfigError(UserError, ValueError):
    """The composed configuration is invalid."""
