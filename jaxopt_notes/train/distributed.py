"""Multi-process data-parallel training through JAX's own runtime (``jax.distributed``).

Every process runs the same program. :func:`initialize` joins the processes (a coordinator
address, the number of processes and this one's id); afterwards ``jax.devices()`` lists the
devices of all of them, :func:`~jaxopt_notes.train.make_mesh` spans them, and each step's
batch is sharded over that global mesh: each process computes the gradients of its own shard
of every batch, and XLA averages them across processes (an all-reduce over the network, gloo on
CPUs). The state is replicated, so every process holds the same parameters after every step,
equal to a one-process run up to float32 rounding (the mean is summed in another order).

Each process holds the (small, embedded) data set and gathers only its shard of each batch on
its own devices. Process 0 alone writes the run directory; the others train with no output.

On several hosts, run on each (the same command, its own ``--process-id``)::

    jaxopt-notes train --coordinator HOST0:1234 --num-processes 4 --process-id $I --out RUN

and on one machine, for a test, ``JAX_PLATFORMS=cpu`` with one CPU device per process.
"""

from __future__ import annotations

import jax


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
    """Joins this process to the others (``jax.distributed.initialize``); checks the arguments
    first, so a typo is one sentence rather than a hang."""
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"`coordinator` must be HOST:PORT, got {coordinator!r}")
    if not (isinstance(num_processes, int) and num_processes >= 1):
        raise ValueError(f"`num_processes` must be an integer >= 1, got {num_processes!r}")
    if not (isinstance(process_id, int) and 0 <= process_id < num_processes):
        raise ValueError(f"`process_id` must be in 0..{num_processes - 1}, got {process_id!r}")
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)


def is_writer() -> bool:
    """Whether this process writes the run's files: process 0 of the runtime."""
    return jax.process_index() == 0


def put_replicated(tree, sharding):
    """``tree`` of host arrays, identical on every process, as global arrays with ``sharding``
    (each process provides the copies on its own devices)."""
    import numpy as np

    def one(a):
        a = np.asarray(a) if not isinstance(a, jax.Array) or a.is_fully_addressable else a
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return a
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return jax.tree.map(one, tree)


def fetch(tree):
    """``tree`` of (possibly global) arrays as host NumPy arrays: this process's copy of a
    replicated array, where ``jax.device_get`` would refuse one spanning other processes."""
    import numpy as np

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(a.addressable_data(0))
        return np.asarray(a) if isinstance(a, jax.Array) else a

    return jax.tree.map(one, tree)


def place(tree, sharding):
    """``jax.device_put`` in one process; :func:`put_replicated` across several."""
    return (
        put_replicated(tree, sharding)
        if jax.process_count() > 1
        else jax.device_put(tree, sharding)
    )
