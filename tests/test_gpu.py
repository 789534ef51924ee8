"""The CUDA paths on a real GPU: the checks of test_gpu_paths.py on `cuda` and `cuda:1` (skipped without
one GPU, resp. two). The first person with a GPU runs

    pytest tests/test_gpu.py -v

and knows whether training, resume, compile, bf16, the chunked loader, timing and the ceiling work there.
Nothing here has run yet: no GPU was lent to this project while it was written.
"""
import math
import os

import pytest
import torch

from vggbench import ceiling, compiled, device, launch, measure, trainer
from vggbench.cells import cells_for
from vggbench.checkpoint import Checkpoint
from vggbench.loader import DeviceLoader
from vggbench.options import Options
from vggbench.run import problems, run_cell
from vggbench.trainer import TrainSpec, train

from helpers import killed_then_resumed, tiny_data, tiny_model


def _needs(n: int):
    return pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < n,
                              reason=f"needs {n} CUDA GPU{'s' if n > 1 else ''}")


DEVICES = [pytest.param("cuda", marks=_needs(1)), pytest.param("cuda:1", marks=_needs(2))]
SPEC = TrainSpec(epochs=3, batch_size=32, lr=0.05, stall_epochs=99)


@pytest.fixture(scope="module")
def tiny():
    return tiny_data()


def model(config="A"):
    return tiny_model(config, batch_norm=True)


def kill_and_resume(data, spec, dev, tmp_path, **kw) -> tuple[list, dict]:
    """(the history the checkpoint held, the resumed run's result)."""
    ckpt = Checkpoint(tmp_path / "c.ckpt")
    resumed = killed_then_resumed(data, spec, ckpt, dev, **kw)
    return ckpt.load()["history"], resumed


@pytest.mark.parametrize("name", DEVICES)
def test_resume_on_the_gpu(tiny, tmp_path, name):
    saved, resumed = kill_and_resume(tiny, SPEC, torch.device(name), tmp_path)
    assert resumed["status"] == "unjudged" and resumed["epochs_run"] == 3
    assert resumed["history"][:2] == saved  # the first two epochs came from the checkpoint


@pytest.mark.parametrize("name", DEVICES)
def test_timer_times_the_device_that_works(name):
    dev = torch.device(name)
    a = torch.randn(4096, 4096, device=dev)
    with device.Timer(dev) as t:
        for _ in range(10):
            a @ a
    assert t._stream.device == torch.device("cuda", device.cuda_index(dev))
    rate = 10 * 2 * 4096**3 / t.seconds
    assert 1e11 < rate < 2e15  # events of another GPU give absurd rates (near 0 or near infinite)


@pytest.mark.parametrize("name", DEVICES)
def test_bf16_and_fused_training_on_the_gpu(tiny, name):
    dev = torch.device(name)
    for optimizer in trainer.OPTIMIZERS:  # fused where it builds and steps (Adam: every CUDA torch), else foreach
        m = model().to(dev)
        opt = trainer.make_optimizer(m, SPEC.replace(optimizer=optimizer))
        assert opt.defaults.get("fused") or opt.defaults.get("foreach")
        assert optimizer != "adam" or opt.defaults.get("fused")
        m(torch.randn(2, 3, 32, 32, device=dev)).sum().backward()
        opt.step()
        assert all(torch.isfinite(p).all() for p in m.parameters())
    result = train(model("A-LRN"), tiny, SPEC.replace(epochs=1, amp="bf16"), dev)
    assert result["status"] == "unjudged" and all(math.isfinite(v) for v in result["test"].values())


@pytest.mark.parametrize("name", DEVICES)
def test_host_syncs_per_epoch_not_per_step_on_the_gpu(tiny, name):
    """torch.cuda.set_sync_debug_mode("warn") warns at every operation that waits for the GPU (an
    .item(), float(t), bool(t), a copy to the host ...): as many at 16 images a step as at 32."""
    import warnings

    dev = torch.device(name)
    train(model(), tiny, SPEC.replace(epochs=1), dev)  # first use: lazy initialisation, autotuning
    counts = []
    for batch in (32, 16):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train(model(), tiny, SPEC.replace(epochs=2, batch_size=batch), dev)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in seen))
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize("name", DEVICES)
def test_inductor_compiled_training_resumes_on_the_gpu(tiny, tmp_path, name, monkeypatch):
    monkeypatch.delenv(compiled.BACKEND_ENV, raising=False)
    saved, resumed = kill_and_resume(tiny, SPEC.replace(epochs=2, compile=True), torch.device(name), tmp_path)
    assert resumed["compiled"]["backend"] == "inductor" and resumed["compiled"]["ran_compiled"]
    assert resumed["status"] == "unjudged"


@pytest.mark.parametrize("name", DEVICES)
def test_chunked_loader_prefetches_and_resumes_on_the_gpu(tiny, tmp_path, name):
    dev = torch.device(name)
    per_image = tiny.train_x[0].numel()
    loader = DeviceLoader(tiny.train_x, tiny.train_y, 32, tiny.mean, tiny.std, dev, train=True,
                          resident_bytes=2 * 64 * per_image)
    seen = torch.cat([y for _, y in loader])
    assert not loader.resident and len(seen) == 256 and seen.device == torch.device("cuda", device.cuda_index(dev))
    assert torch.equal(seen.sort().values.cpu(), tiny.train_y.sort().values)
    saved, resumed = kill_and_resume(tiny, SPEC, dev, tmp_path, resident_bytes=2 * 96 * per_image)
    assert resumed["status"] == "unjudged" and resumed["epochs_run"] == 3


@pytest.mark.parametrize("name", DEVICES)
def test_throughput_and_ceiling_on_the_gpu(name):
    dev = torch.device(name)
    mode = device.set_math_mode(dev)
    ampere = torch.cuda.get_device_capability(device.cuda_index(dev))[0] >= 8
    assert mode == {"float32": "tf32" if ampere else "ieee", "cudnn_benchmark": True}
    assert device.free_bytes(dev) > 0
    from vggbench.speed import model_speed

    out = model_speed(model(), dev, 64, TrainSpec(), warmup=2, repeats=3, window_s=0.2,
                      gflops=measure.count_flops(model())["gflops"])
    assert 0 < out["train"]["images_per_s_min"] <= out["train"]["images_per_s"] <= out["train"]["images_per_s_max"]
    assert out["train"]["peak_mem_mb"] > 0 and out["ceiling_dtype"] == "bfloat16"
    assert 0 < out["ceiling_fraction"] <= 1 and not out["ceiling_exceeded"]
    assert ceiling.ceiling(str(dev), "float32")["gflop_per_s"] > 1000


@pytest.mark.parametrize("name", DEVICES)
def test_a_smoke_cell_on_the_gpu(tmp_path, name):
    opts = Options(device=name, epochs=1, train_subset=256, test_subset=128)
    cell = next(c for c in cells_for("batchnorm", opts) if c.case == "A-bn")
    record = run_cell(cell, tmp_path)
    assert record["status"] != "error", record.get("error")
    assert problems(record) == []
    assert record["config"]["gpu"] == torch.cuda.get_device_name(device.cuda_index(torch.device(name)))


@_needs(2)
def test_local_job_with_cuda_1_sees_the_gpus(tmp_path):
    opts = launch.LaunchOptions(launcher="local", device="cuda:1")
    job = launch.make_executor(opts, tmp_path).submit(torch.cuda.device_count)
    assert job.result() == torch.cuda.device_count()
    assert launch.auto_workers("cuda:1") == 1


@_needs(1)
def test_local_jobs_each_see_one_gpu(tmp_path):
    gpus = launch.visible_gpus("cuda")
    job = launch.make_executor(launch.LaunchOptions(launcher="local", device="auto"), tmp_path, gpus[-1]).submit(
        lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))  # a lambda: cloudpickle sends its code, not a bound dict
    assert job.result() == gpus[-1]
