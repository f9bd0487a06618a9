"""Data parallelism on JAX's own engine: a one-axis device mesh, the batch split
over it, parameters and optimiser state replicated.

Under `jax.jit` the gradient of a mean over a sharded batch becomes an
all-reduce that XLA inserts itself, so the training step is the same function
on one device or many. Random draws use JAX's partitionable threefry (the
default), so a sharded batch sees the same noise as an unsharded one and four
devices follow one device's loss trajectory to float rounding.

Several hosts: call `initialize_distributed` first (`zoo train --distributed`);
`jax.devices()` then lists every host's devices and the mesh spans them all.
On CPUs the hosts' collectives are gloo's, whose rendezvous gives a late process
30 s, fixed in jaxlib; the zoo lines its processes up at barriers of JAX's
coordination service first, which wait as long as the job's rendezvous timeout.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zoo.errors import ZooError

DATA_AXIS = "data"
RENDEZVOUS_TIMEOUT_SECONDS = 300.0  # how long a process waits for the others to join, and at each barrier
_rendezvous = {"timeout": RENDEZVOUS_TIMEOUT_SECONDS}
_barrier_numbers = itertools.count()


def initialize_distributed(
    coordinator: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
    rendezvous_timeout: float = RENDEZVOUS_TIMEOUT_SECONDS,
) -> None:
    """Join a multi-host job (`jax.distributed.initialize`, which returns once every process has
    joined); arguments left out are detected (Slurm, Open MPI, TPU). `rendezvous_timeout`: seconds
    a process waits for the others, to join and at each `wait_for_every_process`."""
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=math.ceil(rendezvous_timeout),
        )
    except (RuntimeError, ValueError) as exc:
        raise ZooError(
            f"could not join the distributed job: {str(exc).splitlines()[0]} "
            "(give --coordinator HOST:PORT --num-processes N --process-id I, or run under Slurm / Open MPI)"
        ) from None
    _rendezvous["timeout"] = rendezvous_timeout


def data_mesh(devices: Optional[int] = None, what: str = "train.devices") -> Mesh:
    """A mesh of `devices` devices (all of them when None) along one axis, "data"."""
    available = jax.devices()
    count = len(available) if devices is None else devices
    if count < 1 or count > len(available):
        raise ZooError(
            f"{what} is {count} but JAX sees {len(available)} {available[0].platform} device(s)"
            " (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N)"
        )
    if jax.process_count() > 1 and count != len(available):
        # jax.devices() lists the hosts' devices in turn: a shorter mesh would leave hosts out.
        raise ZooError(
            f"{what} is {count}, but a job of {jax.process_count()} processes must use all "
            f"{len(available)} devices: pass --devices 0"
        )
    return Mesh(np.array(available[:count]), (DATA_AXIS,))


def mesh_for(devices: Optional[int], what: str = "train.devices") -> Optional[Mesh]:
    """The data-parallel mesh of a device count (0 = all); None for one device in one process (no sharding)."""
    if devices in (None, 1) and jax.process_count() == 1:
        return None
    return data_mesh(devices or None, what)


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """Axis `leading` (the batch) split over the data axis."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading), DATA_AXIS))


def global_array(value: Any, sharding: NamedSharding) -> jax.Array:
    """A host value, the same on every process, laid out as `sharding` (works across hosts)."""
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """A pytree of arrays copied to every device of the mesh."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda leaf: global_array(jax.device_get(leaf), sharding), tree)


def check_divisible(batch_size: int, mesh: Mesh, what: str = "train.batch_size") -> None:
    """Refuse a batch that does not split evenly over the mesh."""
    if batch_size % mesh.size:
        raise ZooError(
            f"{what} is {batch_size}, which does not split over {mesh.size} devices; use a multiple of {mesh.size}"
        )


def padded_size(count: int, mesh: Mesh) -> int:
    """`count` rounded up to a multiple of the mesh size (rows added to a last, short batch)."""
    return mesh.size * math.ceil(count / mesh.size)


def to_host(tree: Any) -> Any:
    """A pytree of (possibly sharded, possibly multi-host) arrays as numpy arrays on this host."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def is_main_process() -> bool:
    """True on the process that writes files (process 0 of a multi-host job)."""
    return jax.process_index() == 0


def wait_for_every_process(name: str) -> None:
    """A barrier across the processes of a multi-host job (nothing with one process), on JAX's
    coordination service rather than a collective: it waits for a late process as long as the
    rendezvous timeout, where gloo's rendezvous would give it 30 s."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed  # the job's client; jax exports no barrier of its own but a collective one

    client = distributed.global_state.client
    if client is None:  # processes that JAX joined by itself (a TPU pod): its collective barrier
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
        return
    timeout = _rendezvous["timeout"]
    try:
        client.wait_at_barrier(f"{name} #{next(_barrier_numbers)}", math.ceil(timeout * 1000))
    except Exception as exc:  # the coordination service's DEADLINE_EXCEEDED, or a process that left
        raise ZooError(
            f"the other processes of the job did not reach {name!r} within {timeout:g} s "
            f"(--rendezvous-timeout): {str(exc).splitlines()[0]}"
        ) from None
