"""torch.compile for the trainer and the throughput benchmark, and what really ran compiled.

Dynamo keys its cache on the code object `VGG.forward`, shared by every VGG: each new model
(another architecture, or a fresh copy) is a recompilation of that one function, and after
`torch._dynamo.config.recompile_limit` (8) of them dynamo silently runs the function eagerly. An
11-architecture `--compile` session would train its last cells eagerly while their records say
compile=True. So every model is compiled from a clean dynamo state (`torch._dynamo.reset()`: one
model in use at a time, its predecessors' cache entries are useless), and `report()` says what
dynamo actually did since then: the graphs it built and the frames it gave up on.

Off by default (`--compile` asks for it), on CPU by measurement (issue 25; 1 thread, bf16, AMD EPYC
with AVX512-BF16, 2026-12-06, a loaded shared machine): VGG-D-BN at width 1/8, batch 64 - the cells
of the smoke and cpu profiles - took 211 s to compile its training step (82 s more for inference)
and then trained at 203 images/s against 298-665 eager in the runs on either side of it. A cpu
profile cell trains 60,000 images (about 90 s eager): compile never pays back within a cell.

The backend is inductor unless $VGGBENCH_COMPILE_BACKEND names another (the CPU tests use "eager"
and "aot_eager": the same dynamo capture without inductor's minutes of C++ builds).
"""
from __future__ import annotations

import os

from torch import nn

BACKEND_ENV = "VGGBENCH_COMPILE_BACKEND"
_last_backend: list[str] = []  # the backend of the last compile_model


def backend() -> str:
    return os.environ.get(BACKEND_ENV) or "inductor"


def compile_model(model: nn.Module, backend_name: str | None = None) -> nn.Module:
    """`model` compiled from a clean dynamo state (see the module doc)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    _last_backend[:] = [backend_name or backend()]
    out = torch.compile(model, backend=_last_backend[0])
    if hasattr(model, "spec"):
        out.spec = model.spec  # for torch versions whose OptimizedModule does not forward attributes
    return out


def report() -> dict:
    """What dynamo did since the last compile_model: {"backend", "graphs", "frames", "frames_eager",
    "ran_compiled"}. frames_eager > 0: dynamo gave up on a frame (e.g. the recompile limit) and it ran
    eagerly; ran_compiled is true only when at least one graph was built and no frame fell back."""
    from torch._dynamo.utils import counters

    graphs = int(counters["stats"]["unique_graphs"])
    frames = int(counters["frames"]["total"])
    eager = frames - int(counters["frames"]["ok"])
    return {"backend": _last_backend[0] if _last_backend else backend(), "graphs": graphs, "frames": frames, "frames_eager": eager,
            "ran_compiled": graphs > 0 and eager == 0}
