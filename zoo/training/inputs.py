"""How training batches reach the device: the whole split in device memory, or streamed.

In memory (the default for datasets that fit): the training split lives on
the device and each step receives the indices of its batch. Streamed (for a
split larger than `train.memory_budget_mb`, or `train.input: stream`): grain
reads each step's rows from the host-side split, in the same epoch-wise order
(`zoo.core.data.batch_indices`), on background threads, and the batch is put on the
devices two steps ahead; in a multi-process job each process reads only the
rows of its own devices. The jitted step is the same function either way, so
both paths train on the same batches with the same binarization draws.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np

from zoo.training import parallel
from zoo.core.data import batch_indices
from zoo.core.interfaces import Split

# Steps a mesh may have in flight. XLA's CPU client runs each device's share of a step
# on a shared thread pool, and a collective waits until every device's share has
# joined it. With hundreds of steps dispatched ahead, shares of later steps hold the
# pool's threads while they wait in their all-reduce, the share of an earlier step
# that would release them never gets a thread, and the rendezvous times out (abort
# after 40 s: "Expected 4 threads to join the rendezvous"). Two steps in flight keep
# the host ahead of the devices and never starve them.
MAX_STEPS_IN_FLIGHT_ON_A_MESH = 2
STREAM_THREADS = 2
STREAM_PREFETCH = 2  # blocks of STEPS_PER_READ steps read ahead on the host
STEPS_PER_READ = 16
DEVICE_PREFETCH = 2  # blocks on the devices: the current one and the next
SCAN_BLOCK = 10  # steps per call of a scanned loop (InMemoryInput); one compiled length
CALIBRATION_ROUNDS = 2  # timed blocks of SCAN_BLOCK steps of each loop when train.loop is "auto"
CALIBRATION_STEPS = SCAN_BLOCK + 1 + 2 * CALIBRATION_ROUNDS * SCAN_BLOCK  # a block and a step to compile, the rounds


def bound_in_flight(outputs: list, mesh: Optional[parallel.Mesh]) -> None:
    """On a mesh, wait for the step MAX_STEPS_IN_FLIGHT_ON_A_MESH before the newest."""
    if mesh is not None and len(outputs) > MAX_STEPS_IN_FLIGHT_ON_A_MESH:
        jax.block_until_ready(outputs[-1 - MAX_STEPS_IN_FLIGHT_ON_A_MESH])


def stacked_metrics(outputs: list) -> dict[str, np.ndarray]:
    """Each metric per step, as host arrays."""
    return jax.tree.map(lambda *steps: np.stack(steps), *parallel.to_host(outputs))


def run_steps(
    train_step, state, images, labels, indices: np.ndarray, start: int, mesh: Optional[parallel.Mesh] = None, halt=None
):
    """Run len(indices) in-memory steps from `start`; returns the state and each metric per step (host arrays).

    Steps are dispatched without waiting, so the host stays ahead of the device;
    on a mesh at most MAX_STEPS_IN_FLIGHT_ON_A_MESH at a time. When `halt` turns
    true (a stop signal), no further step is dispatched: fewer steps come back.
    """
    chunk = jnp.asarray(indices) if mesh is None else parallel.global_array(indices, parallel.batch_sharded(mesh, 1))
    outputs: list[Any] = []
    for position in range(len(indices)):
        if outputs and halt:
            break
        state, metrics = train_step(state, images, labels, chunk, position, start + position)
        outputs.append(metrics)
        bound_in_flight(outputs, mesh)
    return state, stacked_metrics(outputs)


def split_bytes(split: Split) -> int:
    """Bytes the split takes on the device."""
    return int(split.images.nbytes + split.labels.nbytes)


def choose_input(config, split: Split) -> str:
    """ "memory" or "stream": `train.input`, or with "auto" whether the split fits `train.memory_budget_mb`."""
    if config.input != "auto":
        return config.input
    return "stream" if split_bytes(split) > config.memory_budget_mb * 2**20 else "memory"


def process_rows(rows: np.ndarray, mesh: Optional[parallel.Mesh]) -> np.ndarray:
    """The rows of a batch this process feeds: all of them, or its devices' share across processes."""
    if mesh is None or jax.process_count() == 1:
        return rows
    share = len(rows) // jax.process_count()
    return rows[jax.process_index() * share : (jax.process_index() + 1) * share]


def host_blocks(
    split: Split, batch_size: int, seed: int, start: int, stop: int, mesh: Optional[parallel.Mesh]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks (images (n, B, ...), labels (n, B)) of the batches of steps start..stop-1, STEPS_PER_READ
    steps a block (fewer in the last), read by grain on background threads with one gather each:
    per element grain costs about 0.4 ms here, as much as a small model's whole step."""
    import grain

    def read(first: int) -> tuple[np.ndarray, np.ndarray]:
        rows = batch_indices(len(split.images), batch_size, seed, first, min(STEPS_PER_READ, stop - first))
        rows = np.stack([process_rows(r, mesh) for r in rows])
        return split.images[rows], split.labels[rows]

    blocks = grain.MapDataset.range(start, stop, STEPS_PER_READ).map(read)
    return iter(
        blocks.to_iter_dataset(grain.ReadOptions(num_threads=STREAM_THREADS, prefetch_buffer_size=STREAM_PREFETCH))
    )


def place(
    block: tuple[np.ndarray, np.ndarray], batch_size: int, mesh: Optional[parallel.Mesh]
) -> tuple[jax.Array, jax.Array]:
    """A host block of batches on the device, or split over the mesh (batch axis 1) from each process's own rows."""
    if mesh is None:
        return jax.device_put(block[0]), jax.device_put(block[1])
    sharding = parallel.batch_sharded(mesh, 1)
    return tuple(
        jax.make_array_from_process_local_data(sharding, part, (len(part), batch_size) + part.shape[2:])
        for part in block
    )


class StreamedInput:
    """Training batches streamed by grain in blocks, each block put on the devices one block ahead.

    The jitted step takes the block and the position of its batch in it (as the
    in-memory step takes the dataset and its batch's indices), so a step costs the
    host no more than in memory.
    """

    def __init__(
        self,
        train_step,
        split: Split,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        mesh: Optional[parallel.Mesh] = None,
    ):
        self.train_step, self.batch_size, self.mesh = train_step, batch_size, mesh
        self.host = host_blocks(split, batch_size, seed, start, stop, mesh)
        self.ready: collections.deque = collections.deque()
        self.position = 0
        self.next_step, self.stop = start, stop

    def _block(self) -> tuple[jax.Array, jax.Array]:
        """The block holding the next step's batch, the next one already on its way to the devices."""
        while len(self.ready) < DEVICE_PREFETCH:
            block = next(self.host, None)
            if block is None:
                break
            self.ready.append(place(block, self.batch_size, self.mesh))
        if self.position == len(self.ready[0][1]):
            self.ready.popleft()
            self.position = 0
            return self._block()
        return self.ready[0]

    def run(self, state: Any, start: int, stop: int, halt=None):
        """Run steps start..stop-1 (following the previous call); returns the state and each metric per step.

        When `halt` turns true no further step is dispatched, as in `run_steps`.
        """
        if start != self.next_step or stop > self.stop:
            raise ValueError(
                f"this stream feeds steps {self.next_step}..{self.stop - 1} in order; asked for {start}..{stop - 1}"
            )
        outputs: list[Any] = []
        for step in range(start, stop):
            if outputs and halt:
                break
            self.next_step = step + 1
            images, labels = self._block()
            state, metrics = self.train_step(state, images, labels, self.position, step)
            self.position += 1
            outputs.append(metrics)
            bound_in_flight(outputs, self.mesh)
        return state, stacked_metrics(outputs)


class InMemoryInput:
    """The training split on the device; each step gathers its batch by index.

    With `scanned` (training.make_scanned_steps) and `loop` "scan", steps run
    SCAN_BLOCK to a call as a lax.scan (a chunk's remainder one per call); with
    "step", one per call; with "auto", the first CALIBRATION_STEPS steps of the
    run time both loops, in alternation after compiling each, and the rest run
    the faster way: `self.loop` then says which, `self.timings` the seconds per
    step of each. Calibration runs real training steps in order, and both loops
    compute the same updates, so the choice changes the speed, not the numbers.
    """

    def __init__(
        self,
        train_step,
        split: Split,
        batch_size: int,
        seed: int,
        mesh: Optional[parallel.Mesh] = None,
        scanned=None,
        loop: str = "step",
    ):
        self.train_step, self.split, self.batch_size, self.seed, self.mesh = train_step, split, batch_size, seed, mesh
        self.scanned, self.loop = scanned, loop if scanned is not None else "step"
        self.timings: dict[str, float] = {}
        if mesh is None:
            self.images, self.labels = jnp.asarray(split.images), jnp.asarray(split.labels)
        else:
            self.images, self.labels = (
                parallel.global_array(a, parallel.replicated(mesh)) for a in (split.images, split.labels)
            )

    def run(self, state: Any, start: int, stop: int, halt=None):
        """Run steps start..stop-1; returns the state and each metric per step (host arrays); `halt` as in `run_steps`."""
        indices = batch_indices(len(self.split.images), self.batch_size, self.seed, start, stop - start)
        if self.loop == "step":
            return run_steps(self.train_step, state, self.images, self.labels, indices, start, self.mesh, halt)
        chunk, done = jnp.asarray(indices), 0
        outputs: list[Any] = []
        while done < len(indices) and not (outputs and halt):
            left = len(indices) - done
            if self.loop == "auto" and left >= CALIBRATION_STEPS:
                state, metrics = self._calibrate(state, chunk, done, start)
            elif self.loop == "scan" and left >= SCAN_BLOCK:
                state, metrics = self._steps("scan", state, chunk, done, SCAN_BLOCK, start)
            else:  # a chunk's remainder, or steps before a chunk long enough to calibrate in
                state, metrics = self._steps("step", state, chunk, done, 1, start)
            outputs.append(metrics)
            done += len(metrics["loss"])
        return state, jax.tree.map(lambda *parts: np.concatenate(parts), *parallel.to_host(outputs))

    def _steps(self, loop: str, state, chunk, done: int, count: int, start: int):
        """Steps start+done.. of `count` batches of `chunk` from position `done`, scanned or one per call."""
        if loop == "scan":
            return self.scanned(state, self.images, self.labels, chunk[done : done + count], start + done)
        outputs = []
        for position in range(done, done + count):
            state, metrics = self.train_step(state, self.images, self.labels, chunk, position, start + position)
            outputs.append(metrics)
        return state, jax.tree.map(lambda *steps: jnp.stack(steps), *outputs)

    def _calibrate(self, state, chunk, done: int, start: int):
        """CALIBRATION_STEPS steps: each loop once to compile, then alternately timed; sets loop and timings."""
        plan = [("scan", False), ("step", False)] + [("scan", True), ("step", True)] * CALIBRATION_ROUNDS
        seconds, outputs = {"scan": 0.0, "step": 0.0}, []
        for loop, timed in plan:
            began = time.perf_counter()
            state, metrics = self._steps(loop, state, chunk, done, SCAN_BLOCK if timed or loop == "scan" else 1, start)
            jax.block_until_ready(metrics)
            seconds[loop] += (time.perf_counter() - began) * timed
            outputs.append(metrics)
            done += len(metrics["loss"])
        self.timings = {loop: total / (CALIBRATION_ROUNDS * SCAN_BLOCK) for loop, total in seconds.items()}
        self.loop = "scan" if self.timings["scan"] < self.timings["step"] else "step"
        return state, jax.tree.map(lambda *parts: jnp.concatenate(parts), *outputs)
