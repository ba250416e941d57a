"""Multi-process data-parallel training through JAX's own runtime (``jax.distributed``).

Every process runs the same program. :func:`initialize` joins the processes (a coordinator
address, the number of processes and this one's id); afterwards ``jax.devices()`` lists the
devices of all of them, :func:`~jaxopt_notes.train.make_mesh` spans them, and each step's
batch is sharded over that global mesh: each process computes the gradients of its own shard
of every batch, and XLA averages them across processes (an all-reduce over the network, gloo on
CPUs). The state is replicated, so every process holds the same parameters after every step,
equal to a one-process run up to float32 rounding (the mean is summed in another order).

With ``data_shards = S`` (a multiple of the devices), the training set is cut into ``S`` fixed
shards (example i in shard i mod S) and each process puts on its devices only its own shards
(:func:`shard_training`): every step takes ``batch_size / S`` examples from each shard, so a
process never needs another's training images. With one shard each process holds the whole
(small, embedded) set and gathers its part of each batch. Process 0 alone writes the run
directory, and on ``--resume`` alone reads it, sending the restored state to the others
(:func:`share_from_writer`); the others train with no output. Before anything is trained or
written, the processes exchange their configuration's fingerprint (:func:`check_same_job`) and
all refuse to start if any differs.

On several hosts, run on each (the same command, its own ``--process-id``)::

    jaxopt-notes train --coordinator HOST0:1234 --num-processes 4 --process-id $I --out RUN

and on one machine, for a test, ``JAX_PLATFORMS=cpu`` with one CPU device per process.
"""

from __future__ import annotations

import jax


def join(coordinator: str | None, num_processes: int = 1, process_id: int = 0) -> None:
    """Joins a multi-process job at ``coordinator`` (HOST:PORT of process 0); with none, this
    is the only process, and process numbers other than (1, 0) are refused (they would train
    alone without a word)."""
    if coordinator:
        initialize(coordinator, num_processes, process_id)
    elif (num_processes, process_id) != (1, 0):
        raise ValueError(
            "`num_processes` and `process_id` need `coordinator` (HOST:PORT of process 0) "
            f"for a multi-process job, got --num-processes {num_processes} "
            f"--process-id {process_id} without it"
        )


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


def check_same_job(job: dict) -> None:
    """Refuses to start unless every process holds the same ``job`` (its config and run
    options, JSON values): each one's SHA-256 is gathered from all; where they differ, the
    jobs themselves are, to name the keys. Without this a job whose processes were given
    different learning rates trained on a mix of them and recorded process 0's alone."""
    if jax.process_count() == 1:
        return
    import hashlib
    import json

    import numpy as np
    from jax.experimental import multihost_utils

    text = json.dumps(job, sort_keys=True).encode()
    digest = np.frombuffer(hashlib.sha256(text).digest(), np.uint8)
    digests = np.asarray(multihost_utils.process_allgather(digest))
    if (digests == digests[0]).all():
        return
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray(len(text), np.int32)))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: len(text)] = np.frombuffer(text, np.uint8)
    texts = np.asarray(multihost_utils.process_allgather(padded))
    jobs = [json.loads(bytes(t[:n])) for t, n in zip(texts, sizes, strict=True)]
    keys = sorted(k for k in set().union(*jobs) if len({repr(j.get(k)) for j in jobs}) > 1)
    shown = "; ".join(
        f"`{k}` " + ", ".join(f"{j.get(k)!r} on process {i}" for i, j in enumerate(jobs))
        for k in keys
    )
    raise ValueError(
        f"every process of a job must be given the same configuration, got different ones: {shown}"
    )


def is_writer() -> bool:
    """Whether this process writes the run's files: process 0 of the runtime."""
    return jax.process_index() == 0


def shard_training(x, y, shards: int, mesh):
    """``(x, y)`` of the training set as global ``(shards, N // shards, ...)`` arrays, the shard
    axis over the mesh's devices (``"data"``): each process builds only the shards of its own
    devices, shard ``s`` being examples ``s, s + shards, ...``; ``shards == 1``: replicated
    ``(N, ...)`` arrays instead."""
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    if shards == 1:
        return place((x, y), NamedSharding(mesh, P()))
    if shards % mesh.size:
        raise ValueError(
            f"`data_shards` must be a multiple of the {mesh.size} devices, got {shards}"
        )
    sharding = NamedSharding(mesh, P("data"))

    def one(a):
        a, per = np.asarray(a), len(a) // shards

        def local(index):  # index[0]: this device's slice of the shard axis
            wanted = range(*index[0].indices(shards))
            return np.stack([a[s : per * shards : shards] for s in wanted])

        return jax.make_array_from_callback((shards, per, *a.shape[1:]), sharding, local)

    return one(x), one(y)


def share_from_writer(tree):
    """``tree`` as process 0 holds it, on every process (one broadcast; one process: ``tree``).
    Leaves are arrays of the same shapes everywhere; the result is host NumPy arrays."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return fetch(multihost_utils.broadcast_one_to_all(fetch(tree)))


def share_json_from_writer(value):
    """A JSON-able ``value`` as process 0 holds it, on every process."""
    if jax.process_count() == 1:
        return value
    import json

    import numpy as np

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    size = int(share_from_writer(np.asarray(len(data), np.int64)))
    padded = np.zeros(size, np.uint8)
    padded[: min(size, len(data))] = data[:size]
    return json.loads(bytes(share_from_writer(padded)).decode())


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
