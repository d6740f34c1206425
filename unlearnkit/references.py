"""The reference models of a run: the Original (trained on D) and Retrain (trained on D_r), and their cache keys.

Each comes from the user (a given model or --original), the model cache, or training; under torchrun
rank 0 alone reads and writes the cache and the other ranks take its answer.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

import torch

from unlearnkit import cache
from unlearnkit.checkpoint import load_model
from unlearnkit.engine import CostMeter, fit, retain_cross_entropy
from unlearnkit.contract import Part
from unlearnkit.engine.distributed import agreed, broadcast_state, world
from unlearnkit.models import Classifier, user_network
from unlearnkit.protocol import ProtocolRun
from unlearnkit.workload import fingerprint

Kind = Literal["original", "retrain"]


def cache_key(run: ProtocolRun, kind: Kind) -> str:
    """The model cache's name for the run's original or Retrain model."""
    return cache.cache_key(kind, **_identity(run, kind))


def _identity(run: ProtocolRun, kind: Kind) -> dict[str, Any]:
    """What the reference model depends on: the data, architecture, recipe, views and seed (and Retrain's forget set)."""
    spec, compute = run.spec, run.compute
    identity = {
        "data": run.workload.data_id,
        "model": spec.model.model_dump(),
        "recipe": spec.train.model_dump(mode="json"),
        "views": dataclasses.asdict(run.data.transform) if run.data.transform else None,
        "seed": spec.seed,
    }
    if spec.data.pool != "evaluation" or spec.data.balanced:  # absent otherwise: the keys models were cached under
        # a data set of torch Datasets is identified by its labels, which another choice of its images may share
        identity["images"] = {"pool": spec.data.pool, "balanced": spec.data.balanced}
    if kind == "retrain":
        identity["forget"] = fingerprint(run.split.forget)
    held = torch.cat([run.split.forget, run.split.retain]).sort().values
    if len(held) < len(run.data.train_y):  # trained on part of the training set (an audit's shadow model): which part
        identity["members"] = fingerprint(held)
    if compute.precision != "fp32" or compute.channels_last or compute.compile:
        identity["compute"] = {"precision": compute.precision, "channels_last": compute.channels_last,
                               "compile": compute.compile}  # fp32 models keep the keys they always had
    if world().size > 1:  # each rank's BatchNorm normalises its own rows: not the model one process trains
        identity["world_size"] = world().size
    if compute.device.type == "cpu":  # the thread count splits CPU sums differently, and training carries that on
        identity["torch_threads"] = torch.get_num_threads()
    return identity


def reference_model(run: ProtocolRun, kind: Kind) -> tuple[Classifier, dict[str, Any], str]:
    """The run's original or Retrain model: given, from --original, the cache, or training.

    Returns the model, its cost {flops, seconds} and where it came from.
    """
    if kind == "original" and run.workload.original is not None:
        return run.compute.prepare(run.workload.original), {"flops": None, "seconds": None}, "given"
    model = run.compute.prepare(run.workload.new_model())
    if kind == "original" and run.spec.original is not None:
        meta = load_model(run.spec.original, user_network(model))  # a torchvision model's file has its own keys
        return model, _cost(meta), str(run.spec.original)
    key = cache_key(run, kind)
    main = world().rank == 0
    if run.spec.cache:
        # rank 0 alone reads the cache; the other ranks take its answer (so all train, or none) and its weights
        cached = cache.load(key, model) if main else None
        if agreed(cached is not None):
            if world().size > 1:
                broadcast_state(model)
            run.log(f"{kind}: cached ({key})")
            return model, _cost(cached or {}), "cached"  # the other ranks have no cost: they compute no metrics
    model, cost = _train(run, kind)
    if run.spec.cache and main:
        cache.store(key, model, {**cost, "identity": _identity(run, kind)})
    return model, cost, "trained"


def _train(run: ProtocolRun, kind: Kind) -> tuple[Classifier, dict[str, Any]]:
    torch.manual_seed(run.spec.seed)
    model = run.compute.prepare(run.workload.new_model())
    meter = CostMeter(run.flops_per_forward)
    generator = torch.Generator().manual_seed(run.spec.seed + (1 if kind == "retrain" else 0))
    over: Part = "retain" if kind == "retrain" else "all"
    start = time.perf_counter()
    fit(model, run.data, over, retain_cross_entropy, run.spec.train, generator=generator, cost=meter,
        progress=run.progress, label=kind, compute=run.compute, on_log=run.events.training(kind, run.step),
        log_every=run.spec.log_every)
    return model, {"flops": meter.flops, "seconds": time.perf_counter() - start}


def _cost(meta: dict[str, str]) -> dict[str, float | None]:
    """The cost a model file's metadata records (none where it records none, or not as a number)."""
    return {"flops": _float(meta.get("flops")), "seconds": _float(meta.get("seconds"))}


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
