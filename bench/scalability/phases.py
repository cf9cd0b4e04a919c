"""Concurrent and single steps under a time limit: N calls ``workers`` at a time (:func:`run_concurrently`),
one call (:func:`timed_call`), transient gateway errors retried and counted (:class:`Retrying`). A step that
fails or runs out of time raises :class:`StepFailed`: the sweep stops at that round size."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ALL_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
from tqdm import tqdm


class StepFailed(RuntimeError):
    """A step of the flow failed or ran out of time: the sweep stops at this round size."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step


# Gateway answers a real client retries: gossip-based discovery briefly loses a peer when the machine is
# saturated ("no combination of peers can be derived"), or a connection is not ready yet.
TRANSIENT = ("endorsement policy", "UNAVAILABLE")
RETRIES = 3


class Retrying:
    """Wraps calls so that transient gateway errors are retried (bounded) and counted."""

    def __init__(self) -> None:
        self.count = 0
        self.samples: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, call: Callable[[], Any]) -> Callable[[], Any]:
        from fedledger.sdk.errors import GatewayError

        def wrapped() -> Any:
            for attempt in range(RETRIES + 1):
                try:
                    return call()
                except GatewayError as exc:
                    if attempt == RETRIES or not any(t in str(exc) for t in TRANSIENT):
                        raise
                    with self._lock:
                        self.count += 1
                        if len(self.samples) < 3:
                            self.samples.append(str(exc)[:300])
                    time.sleep(0.5 * 2**attempt)
            raise AssertionError("unreachable")

        return wrapped


@dataclasses.dataclass
class Phase:
    """``n`` calls: latencies (seconds) of those that returned, errors of those that raised, the wall time,
    whether the step limit cut it short, and each call's result (``None`` when it did not return)."""

    n: int
    latencies: list[float]
    errors: list[str]
    wall: float
    timed_out: bool
    results: list[Any]

    def stats(self, prefix: str) -> dict[str, Any]:
        """Row entries ``<prefix>_ok/_errors/_s/_tps/_p50_ms/_p99_ms``."""
        lat = np.asarray(self.latencies) * 1000
        ok = len(self.latencies)
        return {
            f"{prefix}_ok": ok,
            f"{prefix}_errors": self.n - ok,  # failed, or still pending at the step limit
            f"{prefix}_s": round(self.wall, 3),
            f"{prefix}_tps": round(ok / self.wall, 2) if self.wall > 0 else math.nan,
            f"{prefix}_p50_ms": round(float(np.percentile(lat, 50)), 1) if ok else math.nan,
            f"{prefix}_p99_ms": round(float(np.percentile(lat, 99)), 1) if ok else math.nan,
        }


def run_concurrently(label: str, calls: Sequence[Callable[[], Any]], workers: int, limit: float) -> Phase:
    """Runs ``calls`` ``workers`` at a time; stops waiting after ``limit`` seconds (pending ones are cancelled)."""
    latencies: list[float] = []
    errors: list[str] = []
    results: list[Any] = [None] * len(calls)
    lock = threading.Lock()
    bar = tqdm(total=len(calls), desc=label, leave=False)

    def timed(i: int) -> None:
        started = time.perf_counter()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # counted and reported; the phase goes on
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}"[:400])
            return
        finally:
            bar.update(1)
        with lock:
            latencies.append(time.perf_counter() - started)

    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix=label.split()[0])
    started = time.perf_counter()
    futures = [pool.submit(timed, i) for i in range(len(calls))]
    _done, pending = wait(futures, timeout=limit, return_when=ALL_COMPLETED)
    wall = time.perf_counter() - started
    # In-flight calls end by their own gRPC deadlines; queued ones are dropped.
    pool.shutdown(wait=False, cancel_futures=True)
    bar.close()
    return Phase(len(calls), latencies, errors, wall, bool(pending), results)


def timed_call(step: str, call: Callable[[], Any], limit: float) -> tuple[Any, float]:
    """``call()`` in a worker thread; StepFailed if it raises or takes longer than ``limit`` seconds."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=step)
    started = time.perf_counter()
    future = pool.submit(call)
    try:
        result = future.result(timeout=limit)
    except TimeoutError as exc:
        raise StepFailed(step, f"no answer within the step limit of {limit:.0f} s") from exc
    except Exception as exc:
        elapsed = time.perf_counter() - started
        raise StepFailed(step, f"after {elapsed:.1f} s, {type(exc).__name__}: {exc}"[:800]) from exc
    finally:
        pool.shutdown(wait=False)
    return result, time.perf_counter() - started


def check_phase(step: str, phase: Phase, limit: float) -> None:
    """StepFailed when the phase ran out of time or any call failed."""
    if phase.timed_out:
        raise StepFailed(step, f"{len(phase.latencies)} of {phase.n} done within the step limit of {limit:.0f} s")
    if phase.errors:
        raise StepFailed(step, f"{len(phase.errors)} of {phase.n} failed, e.g. {phase.errors[0]}")
