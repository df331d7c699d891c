"""Streaming training on the lesion engine: `rimscope train --engine [CONFIG.json]`.

No fixed data set: epoch e trains on a fresh chunk of M examples, render_batch(config, seed,
e*M, M), a pure function of (seed, epoch), so `--resume` and DDP ranks replay exactly what an
uninterrupted single run saw. The next chunk is rendered in background processes while the
current epoch trains. Each chunk is wrapped as a LesionData and handed to the unchanged
fine-tuning loop (balanced sampler, losses, SupCon, checkpoints, early stopping on validation
PR AUC) through fit's `epoch_data` hook. Validation is a whole-brain simulated cohort when given
(what users see), else a held-out engine chunk of another seed. The engine's Rim+ prevalence
differs from the world's, so the card records both, and the prior shift targets the world's.
Rim voxel truth travels with each chunk (EngineChunk.rim) for a later voxel loss. A phase model
(source "phase") trains on the engine's local field patches: channel 0 of each chunk is swapped
for its field patch, and the card's patch.source says so (predict then feeds it phase input).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..simulate.engine import EngineBatch, engine_pool, render_batch
from ..simulate.engine_config import EngineConfig
from .data import LesionData

log = logging.getLogger("rimscope")

VAL_SEED_OFFSET = 1_000_003  # a held-out engine chunk never shares examples with training
WORLD_PREVALENCE = 0.10  # Rim+ share of lesions in MS cohorts (typically 5-15 %)


@dataclass
class EngineChunk:
    data: LesionData
    rim: np.ndarray  # (N, S, S, S) rim voxel truth on the patch grid
    field: np.ndarray | None  # (N, S, S, S) local field patch (ppm); None in streamed chunks
    meta: list


def with_source(batch: EngineBatch, source: str, copy: bool = True) -> np.ndarray:
    """The batch's patches as training reads them: for a phase model, channel 0 is the local
    field (ppm, less its patch median: patches.sampling.reference_field, as predict reads it)
    instead of QSM, on the same patch grid."""
    if source != "phase":
        return batch.x
    from ..patches.sampling import reference_field

    x = batch.x.copy() if copy else batch.x
    for i, f in enumerate(batch.field):
        x[i, 0] = reference_field(f)
    return x


def lesion_data(x, y, rim, meta: list, seed: int, start: int) -> LesionData:
    """Engine examples start .. start+len(y)-1 of `seed` as LesionData (ids engine-SEED-INDEX)."""
    n = len(y)
    return LesionData(x=x, y=np.asarray(y, np.int64),
                      subject=np.array([f"engine-{seed}-{start + i}" for i in range(n)], dtype=object),
                      lesion_id=np.arange(start, start + n, dtype=np.int64),
                      volume_mm3=np.array([m["volume_mm3"] for m in meta], float),
                      flags=[list(m["flags"]) for m in meta], rim=rim)


def as_chunk(batch: EngineBatch, seed: int, start: int, source: str = "qsm") -> EngineChunk:
    data = lesion_data(with_source(batch, source), batch.y, batch.rim, batch.meta, seed, start)
    return EngineChunk(data, batch.rim, batch.field, batch.meta)


class EngineStream:
    """epoch -> LesionData of that epoch's chunk; renders epoch+1 in the background meanwhile."""

    def __init__(self, config: EngineConfig, seed: int, epoch_examples: int, workers: int = 2,
                 repeats: int = 1, source: str = "qsm"):
        self.config, self.seed, self.m, self.source = config, int(seed), int(epoch_examples), source
        self.repeats = max(int(repeats), 1)
        self._current: tuple[int, LesionData] | None = None
        self.workers = max(int(workers), 1)
        self._pool = None
        self._pending: dict = {}
        self.examples_served = 0

    def _parts(self, epoch: int):
        start = epoch * self.m
        step = math.ceil(self.m / self.workers)
        return [(s, min(step, start + self.m - s)) for s in range(start, start + self.m, step)]

    def _submit(self, epoch: int) -> None:
        if epoch in self._pending:  # one worker still renders in the background, beside training
            return
        if self._pool is None:
            self._pool = engine_pool(self.config, self.workers)
        self._pending[epoch] = [self._pool.apply_async(_training_part, (self.config, self.seed, s, n, self.source))
                                for s, n in self._parts(epoch)]

    def chunk(self, epoch: int) -> EngineChunk:
        """Chunk `epoch`, rendered by the worker pool (always in the background, so training never
        waits on rendering it could overlap); the next chunk is submitted before returning. The
        parts are copied into one preallocated array as they arrive, so a chunk costs its own size
        in memory once (0.59 MB per example), not three times."""
        self._submit(epoch)
        pending = self._pending.pop(epoch)
        x = y = rim = None
        meta: list = []
        at = 0
        for r in pending:
            px, py, prim, pmeta = r.get()
            if x is None:
                x = np.empty((self.m,) + px.shape[1:], px.dtype)
                y = np.empty(self.m, np.int64)
                rim = np.empty((self.m,) + prim.shape[1:], prim.dtype)
            k = len(py)
            x[at:at + k], y[at:at + k], rim[at:at + k] = px, py, prim
            meta += pmeta
            at += k
            del px, prim
        self._submit(epoch + 1)
        self.examples_served += at
        data = lesion_data(x[:at], y[:at], rim[:at], meta, self.seed, epoch * self.m)
        return EngineChunk(data, rim[:at], None, meta)

    def __call__(self, epoch: int) -> LesionData:
        """Epoch e trains on chunk e // repeats: each chunk is seen `repeats` times (with fresh
        augmentation each time), so training is not starved when rendering is slower than it."""
        c = epoch // self.repeats
        if self._current is None or self._current[0] != c:
            self._current = (c, self.chunk(c).data)
        return self._current[1]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
        self._pending.clear()


def _training_part(config: EngineConfig, seed: int, start: int, n: int, source: str):
    """A worker's share of a training chunk: only what training reads (x with channel 0 swapped
    for the local field for a phase model, labels, rim truth as float16, meta), so the field
    patches never cross the process boundary."""
    b = render_batch(config, seed, start, n)
    return with_source(b, source, copy=False), b.y.astype(np.int64), b.rim.astype(np.float16), b.meta


def engine_validation(config: EngineConfig, seed: int, n: int, workers: int = 1,
                      source: str = "qsm") -> LesionData:
    vseed = seed + VAL_SEED_OFFSET
    return as_chunk(render_batch(config, vseed, 0, n, workers=workers), vseed, 0, source).data


def train_on_engine(model_name: str, config: EngineConfig, *, seed: int = 0, examples: int = 200_000,
                    epoch_examples: int = 2048, val: LesionData | None = None, val_examples: int = 1000,
                    options: dict | None = None, init=None, device: str = "cpu", out=None,
                    resume: bool = False, quiet: bool = True, workers: int = 2,
                    prevalence: float = WORLD_PREVALENCE, describe: dict | None = None,
                    repeats: int = 1, source: str = "qsm"):
    """Fit `model_name` on `examples` streamed engine examples, `epoch_examples` per epoch;
    `source` "phase" trains a phase model (channel 0: the engine's local field patches)."""
    from ..errors import InputError
    from ..patches import PatchConfig
    from .finetune import fit

    if epoch_examples < 8 or examples < epoch_examples:
        raise InputError(f"--epoch-examples {epoch_examples} must be >= 8 and <= --examples {examples}")
    if not 0 < prevalence < 1:
        raise InputError(f"--prevalence {prevalence} must lie strictly between 0 and 1")
    options = dict(options or {})
    options["epochs"] = int(math.ceil(examples / epoch_examples))
    if source not in ("qsm", "phase"):
        raise InputError(f"--source {source!r} is not qsm or phase")
    stream = EngineStream(config, seed, epoch_examples, workers, repeats, source)
    try:
        if val is None:
            val = engine_validation(config, seed, val_examples, workers=1, source=source)
            val_kind = {"validation": "engine", "val_seed": seed + VAL_SEED_OFFSET, "n_val": val_examples}
        else:
            val_kind = {"validation": "cohort"}
        first = stream(0)  # seeds the rim probe; epoch 0 trains on it again (the stream keeps it)
        record = {**(describe or {}), **val_kind, "engine_config": config.to_dict(), "engine_seed": seed,
                  "epoch_examples": epoch_examples, "examples_planned": options["epochs"] * epoch_examples,
                  "chunk_repeats": int(repeats),
                  "engine_prevalence": float(first.y.mean()), "engine_rim_fraction": config.rim_fraction,
                  "prevalence_target": prevalence, "source": source}
        model = fit(model_name, first, val, init=init, options=options, seed=seed, device=device, quiet=quiet,
                    out=out, resume=resume, describe=record, epoch_data=stream,
                    patch=PatchConfig(source=source))
    finally:
        stream.close()
    train_rec = model.card_extra["training"]
    train_rec["examples_seen"] = int(train_rec.get("epochs_run", 0)) * epoch_examples
    train_rec["unique_examples"] = int(math.ceil(train_rec.get("epochs_run", 0) / max(int(repeats), 1))) * epoch_examples
    if out is not None:
        from . import distributed as ddp

        if ddp.is_main():
            from ..models.card import save_model

            save_model(model, out)  # again, now with examples_seen in the card
    return model
