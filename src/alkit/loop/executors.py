"""Executors: units of work go in, committed records come out, and only the driver writes the run folder.

- ``local``: every unit in this process, in order.
- ``processes``: units in N spawned worker processes on this machine; records stream back through a queue.
- ``ray``: units as Ray tasks on a local or remote Ray cluster; records stream back through a Ray queue
  actor. A task whose worker dies is retried (``max_retries``) and yields the same records again, which the
  driver skips; an exception raised by the unit itself stops the run, unretried.

Every random draw depends only on (seed, round, purpose), never on where or in what order a unit runs,
so the results equal a one-process run's at the same torch threads per unit.
"""
from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from tqdm.auto import tqdm

from alkit.errors import ConfigError, RunStoreError
from alkit.loop.config import EXECUTORS
from alkit.loop.run_folder import RunFolder
from alkit.loop.units import Record, Unit, UnitRunner



def _commit_all(folder: RunFolder, records: Iterable[Record], bar: tqdm) -> None:
    for record in records:
        if folder.commit(record):
            bar.update(1)


class Executor(ABC):
    """``driver_datasets``: whether units get the datasets the driver loaded (else they load their own)."""

    driver_datasets = False

    @abstractmethod
    def run(self, runner: UnitRunner, units: list[Unit], folder: RunFolder, bar: tqdm) -> None:
        """Run ``units`` and commit what they yield through ``folder``, updating ``bar`` per committed round."""


class LocalExecutor(Executor):
    driver_datasets = True

    def run(self, runner: UnitRunner, units: list[Unit], folder: RunFolder, bar: tqdm) -> None:
        def say(desc: str, phase: str) -> None:
            bar.set_description(desc)
            bar.set_postfix_str(phase)

        for unit in units:
            _commit_all(folder, runner.run(unit, folder.resume(unit), say), bar)


# -- worker processes ----------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _process_init(runner: UnitRunner, records: Any, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER["runner"], _WORKER["records"] = runner, records


def _process_unit(unit: Unit, resume: Any) -> None:
    for record in _WORKER["runner"].run(unit, resume):
        _WORKER["records"].put(record)


class ProcessExecutor(Executor):
    """``workers`` spawned processes (CUDA-safe); each gets threads // workers CPU threads."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, runner: UnitRunner, units: list[Unit], folder: RunFolder, bar: tqdm) -> None:
        workers = min(self.workers, len(units))
        threads = max(1, torch.get_num_threads() // workers)
        bar.set_description(f"{len(units)} units in {workers} worker processes")
        ctx = multiprocessing.get_context("spawn")
        records = ctx.Queue()
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_process_init,
                                 initargs=(runner, records, threads)) as pool:
            pending = {pool.submit(_process_unit, unit, folder.resume(unit)) for unit in units}
            try:
                while pending:
                    _commit_all(folder, _drain(records, 0.5), bar)
                    done, pending = wait(pending, timeout=0, return_when=FIRST_EXCEPTION)
                    for f in done:
                        f.result()
                _commit_all(folder, _drain(records, 0), bar)
            except BrokenProcessPool:
                _commit_all(folder, _drain(records, 0), bar)
                raise RunStoreError(f"{folder.out_dir}: a worker process died (out of memory?); the rounds it "
                                    "committed are kept: run the same command again to resume") from None
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def _drain(records: Any, timeout: float) -> list[Record]:
    """What the queue holds now, waiting up to ``timeout`` for the first item."""
    out: list[Record] = []
    try:
        out.append(records.get(timeout=timeout) if timeout else records.get_nowait())
        while True:
            out.append(records.get_nowait())
    except queue_module.Empty:
        pass
    return out


# -- Ray --------------------------------------------------------------------------------------------------
@dataclass
class RayExecutor(Executor):
    """Units as Ray tasks. ``address`` None starts a local Ray with this machine's CPUs (the driver's loaded
    datasets then travel through the object store); otherwise it connects (``auto``, or ``HOST:6379``) and
    each unit loads its dataset from the dataset spec on the node where it runs."""

    address: str | None = None
    cpus_per_unit: float = 1.0
    gpus_per_unit: float = 0.0
    max_retries: int = 3

    @property
    def driver_datasets(self) -> bool:  # type: ignore[override]
        return self.address is None

    def run(self, runner: UnitRunner, units: list[Unit], folder: RunFolder, bar: tqdm) -> None:
        try:
            import ray
            from ray.util.queue import Queue
        except ImportError:
            raise ConfigError("executor 'ray' needs Ray: pip install 'alkit[ray]'") from None
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     **({} if self.address else {"num_cpus": os.cpu_count()}))
        try:
            self._run(ray, Queue, runner, units, folder, bar)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray: Any, queue_cls: Any, runner: UnitRunner, units: list[Unit], folder: RunFolder,
             bar: tqdm) -> None:
        threads = max(1, int(self.cpus_per_unit))
        task = ray.remote(num_cpus=self.cpus_per_unit, num_gpus=self.gpus_per_unit, max_retries=self.max_retries,
                          retry_exceptions=False)(_ray_unit)
        records = queue_cls(actor_options={"num_cpus": 0})
        runner_ref = ray.put(runner)
        bar.set_description(f"{len(units)} units on Ray")
        pending = [task.remote(runner_ref, unit, folder.resume(unit), records, threads) for unit in units]
        try:
            while pending:
                batch = records.get_nowait_batch(records.qsize())
                _commit_all(folder, batch, bar)
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5 if not batch else 0)
                for ref in done:
                    _ray_result(ray, ref, folder)
            _commit_all(folder, records.get_nowait_batch(records.qsize()), bar)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            ray.kill(records.actor)


def _ray_unit(runner: UnitRunner, unit: Unit, resume: Any, records: Any, threads: int) -> None:
    torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS=1 in its workers
    for record in runner.run(unit, resume):
        records.put(record)


def _ray_result(ray: Any, ref: Any, folder: RunFolder) -> None:
    from ray.exceptions import RayTaskError, WorkerCrashedError

    try:
        ray.get(ref)
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        raise (cause if isinstance(cause, Exception) else exc) from None
    except WorkerCrashedError:
        raise RunStoreError(f"{folder.out_dir}: a Ray worker died and its retries ran out; the rounds it "
                            "committed are kept: run the same command again to resume") from None


def make_executor(name: str, workers: int = 1, *, ray_address: str | None = None, cpus_per_unit: float = 1.0,
                  gpus_per_unit: float = 0.0) -> Executor:
    if name == "ray":
        return RayExecutor(ray_address, cpus_per_unit, gpus_per_unit)
    if name == "processes" or workers > 1:
        return ProcessExecutor(max(1, workers))
    if name != "local":
        raise ConfigError(f"executor '{name}' is unknown; choose {', '.join(EXECUTORS)}")
    return LocalExecutor()
