"""Runs on Ray: each sweep run (student x config x seed) a Ray task, on a local cluster started
for the call or an existing one (`auto`, `ray://host:port`). Ray schedules; this module only
checks that every node sees the home directory, asks for resources, and retries a run whose
worker died (it resumes from its last checkpoint). Ray is imported only here, only when used
(`pip install 'cot-factory[ray]'`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
RETRIES = 3  # a run whose worker dies is started again this many times (it resumes)


class ClusterError(RuntimeError):
    """A cluster that cannot run the sweep: unreachable, or a node that cannot see the home."""


def connect(address: str | None):
    """The `ray` module, initialised: a local cluster when `address` is None or `local`."""
    try:
        import ray
    except ImportError:
        raise ClusterError("sweeping on Ray needs Ray: pip install 'cot-factory[ray]'") from None
    if ray.is_initialized():
        return ray
    try:  # "local" starts a cluster of its own even where another one runs
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=True)
    except Exception as err:  # refused, unknown host, version mismatch: Ray says which
        raise ClusterError(f"cannot join the Ray cluster at {address}: {err}") from None
    return ray


def check_home(ray, home: Path) -> None:
    """Every alive node reads a marker the driver wrote into `home`; one that cannot is an error
    naming it: the run folders must be on a file system every worker sees."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(8)
    marker = home / f".ray-check-{token}"
    marker.write_text(token)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        reads = [
            ray.remote(_read_marker)
            .options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
            )
            .remote(str(marker))
            for n in nodes
        ]
        for node, seen in zip(nodes, ray.get(reads), strict=True):
            if seen != token:
                raise ClusterError(
                    f"Ray node {node['NodeManagerAddress']} cannot see the home directory "
                    f"{home}: put it on a file system every worker mounts at the same path"
                )
    finally:
        marker.unlink(missing_ok=True)


def _read_marker(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def resources(ray, gpus_per_run: float | None, cpus_per_run: float) -> dict:
    """What one run asks for: a GPU (or `gpus_per_run`) where the cluster has GPUs, CPUs
    otherwise; Ray sets each task's OMP/torch threads to its CPUs."""
    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    gpus = (1 if gpus_per_run is None else gpus_per_run) if has_gpus else 0
    return {"num_gpus": gpus, "num_cpus": cpus_per_run}


def run_all(
    fn: Callable, runs: list[tuple], labels: list[str], *, address, gpus, cpus, home: Path, done
) -> None:
    """Run `fn(*args)` for every args in `runs` as Ray tasks; `done(label)` as each finishes.
    A task whose worker or node died is resubmitted (RETRIES times); an error raised by `fn`
    itself stops the sweep with its message."""
    ray = connect(address)
    started_here = address in (None, "local")
    try:
        check_home(ray, home)
        task = ray.remote(fn).options(max_retries=0, **resources(ray, gpus, cpus))
        pending = {
            task.remote(*args): (args, label, 0) for args, label in zip(runs, labels, strict=True)
        }
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            args, label, tries = pending.pop(ref)
            try:
                ray.get(ref)
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as err:
                if tries >= RETRIES:
                    raise ClusterError(
                        f"run {label}: its worker died {tries + 1} times: {err}"
                    ) from None
                log.warning(
                    "run %s: its worker died (%s); starting it again, it resumes",
                    label,
                    type(err).__name__,
                )
                pending[task.remote(*args)] = (args, label, tries + 1)
                continue
            except ray.exceptions.RayTaskError as err:
                raise err.as_instanceof_cause() from None
            done(label)
    finally:
        if started_here:
            ray.shutdown()
