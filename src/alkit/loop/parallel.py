"""Worker processes for an experiment: its (dataset, seed) units run in parallel, one SQLite store.

Every random draw depends only on (seed, round, purpose), never on which process or in what
order a unit runs, so the results equal a one-process run's with the same CPU threads per
process. Processes are spawned (CUDA-safe), each rebuilds the experiment from a pickled
payload, loads its datasets once, and commits rounds to the run folder's store as a
one-process run does; progress is read back from the store.
"""
from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from alkit.errors import ConfigError, RunStoreError
from alkit.storage.run_store import RunStore

if TYPE_CHECKING:
    from alkit.loop.experiment import Experiment


def run_in_processes(exp: Experiment, payload: tuple[Any, ...], store: RunStore, tasks: list[tuple[str, int, bool]],
                     workers: int, bar: tqdm) -> None:
    """Run ``tasks`` ((dataset, seed, full_data) units) in ``workers`` spawned processes sharing the store.

    ``payload`` is :func:`worker_payload`'s, checked before the run folder was touched. Each process
    gets threads // workers CPU threads (float sums depend on the thread count, as they do between
    machines); on a GPU they share the device.
    """
    threads = max(1, torch.get_num_threads() // workers)
    bar.set_description(f"{len(tasks)} units in {workers} worker processes")
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(payload, threads)) as pool:
        futures = [pool.submit(_worker_task, *task) for task in tasks]
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_EXCEPTION)
                bar.update(store.count() - bar.n)
                for f in done:
                    f.result()
        except BrokenProcessPool:
            raise RunStoreError(f"{exp.out_dir}: a worker process died (out of memory?); the rounds it committed "
                                "are kept: run the same command again to resume") from None
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    bar.update(store.count() - bar.n)


def worker_payload(exp: Experiment) -> tuple[Any, ...]:
    """What each worker process needs to rebuild the experiment; refused early if it cannot be pickled."""
    shared = (exp.config, exp.out_dir, exp.model_spec, exp.preloaded, exp.custom_oracle)
    try:
        pickle.dumps(shared)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ConfigError(f"workers={exp.config.workers}: the model factory, oracle or preloaded datasets cannot be "
                          f"sent to worker processes ({exc}); pass a module-level function or an nn.Module, "
                          "or use workers=1") from None
    return shared


_WORKER: dict[str, Any] = {}


def _worker_init(shared: tuple[Any, ...], threads: int) -> None:
    from alkit.loop.experiment import Experiment

    config, out_dir, model, preloaded, oracle = shared
    torch.set_num_threads(threads)
    _WORKER["experiment"] = Experiment(config, out_dir, model=model, datasets=preloaded, oracle_factory=oracle,
                                       progress=False)


def _worker_task(key: str, seed: int, full_data: bool) -> None:
    from alkit.loop.experiment import load_spec

    exp = _WORKER["experiment"]
    if key not in exp.loaded:
        spec = next(s for s in exp.config.datasets if s.key == key)
        exp.loaded[key] = exp.preloaded.get(key) or load_spec(spec, False)
    with RunStore(exp.out_dir / "runs.sqlite") as store:
        exp.run_task(store, key, seed, full_data=full_data)
