"""Concurrent commits: whether an error is Delta's "another writer committed first", and retrying a call
that lost to one."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")

# Delta's optimistic-concurrency errors: another writer committed first. Nothing of the losing
# transaction was committed, so running it again (against the new version) is safe for our MERGEs.
CONFLICTS = frozenset({
    "DELTA_CONCURRENT_APPEND", "DELTA_CONCURRENT_DELETE_DELETE", "DELTA_CONCURRENT_DELETE_READ",
    "DELTA_CONCURRENT_TRANSACTION", "DELTA_CONCURRENT_WRITE", "DELTA_METADATA_CHANGED", "DELTA_PROTOCOL_CHANGED",
})  # fmt: skip
CONFLICT_TYPES = ("DeltaConcurrentModificationException", "ConcurrentWriteException", "MetadataChangedException",
                  "ProtocolChangedException", "ConcurrentAppendException", "ConcurrentDeleteReadException",
                  "ConcurrentDeleteDeleteException", "ConcurrentTransactionException")  # delta.exceptions.base
CONFLICT_ATTEMPTS = 8


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is Delta's "a concurrent transaction committed first": by its condition (Spark
    Connect and plain pyspark; it may carry a sub-condition, ``DELTA_CONCURRENT_APPEND.WITHOUT_HINT``),
    or by class name (delta-spark's Python API converts these errors to its own classes, without a
    condition). Names, not an import of ``delta.exceptions``: delta-spark 4.0.0 (EMR's) has no such
    module, and an import failing here would replace the error being checked."""
    if any(cls.__name__ in CONFLICT_TYPES for cls in type(exc).__mro__):
        return True
    condition = getattr(exc, "getCondition", None)
    return callable(condition) and (condition() or "").split(".")[0] in CONFLICTS


def retry_on_conflict(call: Callable[..., T]) -> Callable[..., T]:
    """``call`` retried (jittered backoff, up to CONFLICT_ATTEMPTS times) when another writer's commit
    beat it; every other error, and the last conflict, is raised as is."""
    import tenacity

    return tenacity.retry(
        retry=tenacity.retry_if_exception(is_conflict),
        wait=tenacity.wait_random_exponential(multiplier=0.5, max=10),
        stop=tenacity.stop_after_attempt(CONFLICT_ATTEMPTS),
        reraise=True,
    )(call)
