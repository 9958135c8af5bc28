"""Options of the Ray engine (kept apart so that the CLI builds them without importing Ray)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class RayOptions:
    address: str | None = None
    """``None``: start a local Ray for the run; ``"auto"``: join the running cluster; or ``ray://…``."""
    actors: int = 1
    """Encoder actors (each loads the model once)."""
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    batch_size: int = 16
    """Images per encoder call in an actor."""
    init_kwargs: dict[str, Any] | None = None
    """Extra ``ray.init`` arguments for a local Ray (e.g. ``num_cpus``, ``object_store_memory``)."""
    retries: int = 3
    """Times one batch (or one decode task) is run again after the worker running it died (killed,
    out of memory, its node lost). A dead encoder actor is always restarted; a batch that kills its
    worker more often than this ends the run, and ``--resume`` continues it."""
