"""The CUDA paths, run on CPU: each defect a review of them found (issue 11), shown by running the same
logic on CPU, with mocks where only a GPU could show it. tests/test_gpu.py runs them on a real GPU."""
import math
import os
import threading

import pytest
import torch

from vggbench import ceiling, cli, compiled, device, launch, trainer
from vggbench.cells import cells_for
from vggbench.checkpoint import Checkpoint
from vggbench.data import ImageData
from vggbench.loader import DeviceLoader
from vggbench.options import Options
from vggbench.trainer import TrainSpec, train

from helpers import Killed, die_at, killed_then_resumed, tiny_data, untimed
from helpers import tiny_model as model

CPU = torch.device("cpu")
SPEC = TrainSpec(epochs=3, batch_size=32, lr=0.05, augment=True, stall_epochs=99)


@pytest.fixture(scope="module")
def tiny():
    return tiny_data()


# 1. resume: RNG states restored whatever device torch.load put the checkpoint's tensors on

def test_rng_states_restore_from_a_checkpoint_mapped_off_the_cpu(tiny, tmp_path):
    ckpt = Checkpoint(tmp_path / "c.ckpt")
    with pytest.raises(Killed):
        train(model(), tiny, SPEC, CPU, seed=1, checkpoint=ckpt, on_epoch=die_at(2))
    # map_location="meta" stands for a GPU: every tensor leaves the CPU (torch.set_rng_state accepts CPU
    # byte tensors only: restoring from a CUDA map_location failed on every resume)
    state = ckpt.load(map_location="meta")
    loader = DeviceLoader(tiny.train_x, tiny.train_y, 32, tiny.mean, tiny.std, CPU, train=True)
    torch.manual_seed(123)
    trainer.restore_rng(state, loader)
    on_cpu = ckpt.load(map_location="cpu")
    assert torch.equal(torch.get_rng_state(), trainer._rng(on_cpu["torch_rng"]))
    assert torch.equal(loader.generator.get_state(), trainer._rng(on_cpu["loader_rng"]))
    assert torch.equal(trainer._rng(torch.arange(4, dtype=torch.uint8)), torch.arange(4, dtype=torch.uint8))


def test_train_loads_the_checkpoint_on_the_cpu(tiny, tmp_path, monkeypatch):
    asked = []
    real = Checkpoint.load
    monkeypatch.setattr(Checkpoint, "load", lambda self, map_location=None: asked.append(map_location)
                        or real(self, map_location=map_location))
    resumed = killed_then_resumed(tiny, SPEC.replace(epochs=3), Checkpoint(tmp_path / "c.ckpt"))
    assert resumed["epochs_run"] == 3 and asked == ["cpu", None, "cpu"]  # None: the test's own look


# 2. Timer: CUDA events on the timed device's stream

class FakeEvent:
    def __init__(self, enable_timing=False):
        self.stream = "none"

    def record(self, stream=None):
        self.stream = stream

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return 5.0


def test_timer_records_its_events_on_the_stream_of_the_device_that_works(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: f"stream of {device}")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    dev = torch.device("cuda", 1)
    with device.Timer(dev) as t:
        pass
    assert t._start.stream == t._end.stream == "stream of cuda:1" and synced == [dev]
    assert t.seconds == pytest.approx(0.005)


# 3. -n auto with an explicit GPU; 4. submitit's local executor and GPUs

def test_xdist_auto_with_one_explicit_gpu_is_one_worker(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(launch, "cpu_cores", lambda: 16)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert launch.auto_workers("cuda:1") == 1
    assert launch.auto_workers("cuda") == launch.auto_workers("auto") == 4
    assert launch.auto_workers("cpu") == 16


def test_local_jobs_get_a_gpu_round_robin_and_cuda_n_keeps_the_numbering(monkeypatch, tmp_path):
    assert [launch.next_gpu(["0", "1"], used) for used in ([], ["0"], ["0", "1"], ["0", "1", "0"])] == \
        ["0", "1", "0", "1"]  # more jobs than GPUs: shared, never none
    assert launch.next_gpu([], []) is None
    opts = launch.LaunchOptions(launcher="local", device="cuda:1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aa,GPU-bb")
    assert launch.make_executor(opts, tmp_path).parameters["setup"] == ["export CUDA_VISIBLE_DEVICES=GPU-aa,GPU-bb"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert launch.make_executor(opts, tmp_path).parameters["setup"] == ["unset CUDA_VISIBLE_DEVICES"]
    auto = launch.LaunchOptions(launcher="local", device="auto")
    assert launch.make_executor(auto, tmp_path, "GPU-bb").parameters["setup"] == ["export CUDA_VISIBLE_DEVICES=GPU-bb"]
    assert "setup" not in launch.make_executor(auto, tmp_path, None).parameters  # a CPU job: no GPU to give


def test_a_local_job_with_cuda_n_sees_this_process_gpus(monkeypatch, tmp_path):
    # Before: submitit's local executor set CUDA_VISIBLE_DEVICES="" for a job given no GPU index.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4")
    job = launch.make_executor(launch.LaunchOptions(launcher="local", device="cuda:1"), tmp_path).submit(
        lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))  # a lambda: cloudpickle sends its code, not a bound dict
    assert job.result() == "3,4"


# 5. torch.compile: never past dynamo's recompile limit silently; the record says what ran compiled

def test_compiling_many_architectures_stays_compiled_and_a_fallback_is_reported():
    import torch._dynamo

    configs = ["A", "A-LRN", "B", "C", "D", "E"]
    variants = [(c, bn) for bn in (False, True) for c in configs][:9]  # 9 > the recompile limit of 8
    x = torch.randn(2, 3, 32, 32)
    for c, bn in variants:
        compiled.compile_model(model(c, batch_norm=bn), "eager")(x)
        assert compiled.report()["ran_compiled"], (c, bn)
    # without the reset, a model past the limit runs eagerly (limit 2 here, to keep the test short),
    # and report() says so
    with torch._dynamo.config.patch(recompile_limit=2):
        compiled.compile_model(model("A"), "eager")(x)
        for c, bn in variants[1:3]:
            torch.compile(model(c, batch_norm=bn), backend="eager")(x)
    assert compiled.report()["frames_eager"] > 0 and not compiled.report()["ran_compiled"]


def test_compiled_training_resumes_from_its_checkpoint(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv(compiled.BACKEND_ENV, "eager")
    spec = SPEC.replace(compile=True, epochs=2)
    full = train(model(batch_norm=True), tiny, spec, CPU, seed=1)
    assert full["compiled"]["ran_compiled"] and full["compiled"]["backend"] == "eager"
    assert untimed(killed_then_resumed(tiny, spec, Checkpoint(tmp_path / "c.ckpt"))) == untimed(full)


@pytest.mark.slow
def test_inductor_compiled_training_on_cpu(tiny):
    small = ImageData("small", tiny.classes, tiny.train_x[:64], tiny.train_y[:64], tiny.val_x[:32], tiny.val_y[:32],
                      tiny.test_x[:32], tiny.test_y[:32], mean=tiny.mean, std=tiny.std)
    result = train(model(), small, SPEC.replace(epochs=1, compile=True), CPU)
    assert result["compiled"]["backend"] == "inductor" and result["compiled"]["ran_compiled"]
    assert math.isfinite(result["history"][0]["train_loss"])


# 6, 10, 11. One math mode for every measurement, set before the first; the cell measures the
# model it trains (compiled when it trains compiled)

def test_a_cell_measures_the_model_it_trains_in_one_math_mode(monkeypatch):
    from vggbench import run, speed

    monkeypatch.setenv(compiled.BACKEND_ENV, "eager")
    flags = lambda: (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,  # noqa: E731
                     torch.backends.cudnn.allow_tf32)
    seen = []
    real_throughput, real_train = speed.throughput, run.train
    monkeypatch.setattr(speed, "throughput", lambda *a, **k: seen.append(("throughput", flags()))
                        or real_throughput(*a, **k))
    monkeypatch.setattr(run, "train", lambda *a, **k: seen.append(("train", flags())) or real_train(*a, **k))
    torch.backends.cudnn.benchmark = torch.backends.cuda.matmul.allow_tf32 = False
    opts = Options(device="cpu", epochs=1, train_subset=128, test_subset=64, compile=True)
    cell = next(c for c in cells_for("batchnorm", opts) if c.case == "A-bn")
    record, _ = run.execute(cell)
    assert [k for k, _ in seen] == ["throughput", "throughput", "train"]
    assert {f for _, f in seen} == {(True, True, True)}
    thr = record["throughput"]
    assert thr["train"]["compiled"]["ran_compiled"] and thr["infer"]["compiled"]["ran_compiled"]
    assert record["result"]["compiled"]["ran_compiled"]
    assert thr["math_mode"] == {"float32": "ieee", "cudnn_benchmark": True} and thr["ceiling_math_mode"] == "ieee"
    assert thr["train"]["steps_per_repeat"] >= 1 and thr["train"]["spread"] >= 0


def test_fp32_math_mode_is_tf32_for_matmul_and_convolution_alike(monkeypatch):
    torch.backends.cuda.matmul.allow_tf32 = False
    device.set_math_mode(CPU)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    for capability, mode in (((8, 0), "tf32"), ((7, 0), "ieee")):  # TF32 units: Ampere and later
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i, c=capability: c)
        assert device.math_mode(torch.device("cuda"))["float32"] == mode
    assert device.math_mode(CPU)["float32"] == "ieee"


# 7. mem_get_info with an indexed device

def test_free_memory_asks_with_a_device_index(monkeypatch):
    def mem_get_info(device=None):  # as torch 2.2-2.4: a device without an index raises
        if not isinstance(device, int):
            raise ValueError("Expected a torch.device with a specified index or an integer")
        return (1000 + device, 2000)
    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    assert device.free_bytes(torch.device("cuda")) == 1002
    assert device.free_bytes(torch.device("cuda", 1)) == 1001


# 8. fused optimisers: built where they step, else foreach, decided before the model's first step

@pytest.mark.parametrize("name", trainer.OPTIMIZERS)
def test_fused_optimizer_construction_on_cpu(name):
    m = model()
    opt = trainer.make_optimizer(m, TrainSpec(optimizer=name), fused=True)
    assert opt.defaults["fused"] and not opt.defaults.get("foreach")
    m(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    assert all(math.isfinite(p.sum().item()) for p in m.parameters())


def test_fused_optimizer_that_fails_its_first_step_falls_back(monkeypatch):
    class FusedStepFails(torch.optim.Adagrad):
        def step(self, closure=None):
            if self.defaults.get("fused"):
                raise RuntimeError("fused Adagrad: no kernel for this device")
            return super().step(closure)

    monkeypatch.setitem(trainer.OPTIMIZER_CLASSES, "adagrad", FusedStepFails)
    m = model()
    opt = trainer.make_optimizer(m, TrainSpec(optimizer="adagrad"), fused=True)
    m(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()  # before: the model's first step raised
    assert opt.defaults["foreach"] and not opt.defaults.get("fused")


# 9. the chunked loader reads ahead, and trains and resumes through train()

def test_chunked_loader_reads_the_next_chunk_while_the_current_one_trains(tiny, monkeypatch):
    started = {}
    ready = threading.Event()
    real = DeviceLoader._fetch

    def fetch(self, start, stream):
        started[start] = threading.current_thread().name
        if len(started) == 2:
            ready.set()
        return real(self, start, stream)

    monkeypatch.setattr(DeviceLoader, "_fetch", fetch)
    per_image = tiny.train_x[0].numel()
    loader = DeviceLoader(tiny.train_x, tiny.train_y, 32, tiny.mean, tiny.std, CPU, train=True,
                          resident_bytes=2 * 64 * per_image)  # chunks of 64 images: 4 chunks
    assert not loader.resident and loader.chunk == 64
    batches = iter(loader)
    next(batches)  # the first batch of the first chunk: the second chunk is being read meanwhile
    assert ready.wait(10), "the next chunk was not read ahead"
    assert all(name.startswith("vggbench-prefetch") for name in started.values())
    assert sum(len(y) for _, y in batches) == 256 - 32


def test_chunked_training_resumes_like_uninterrupted(tiny, tmp_path):
    chunked = dict(resident_bytes=2 * 96 * tiny.train_x[0].numel())  # chunks of 96 of the 256 images
    full = train(model(batch_norm=True), tiny, SPEC, CPU, seed=1, **chunked)
    assert full["status"] == "unjudged" and full["epochs_run"] == 3
    assert full != train(model(batch_norm=True), tiny, SPEC, CPU, seed=1)  # block shuffling: another order
    assert untimed(killed_then_resumed(tiny, SPEC, Checkpoint(tmp_path / "c.ckpt"), **chunked)) == untimed(full)


# 12. the GPU model is part of a CUDA cell's identity, and in the tables' device column

def test_gpu_model_is_in_the_identity_of_a_cuda_cell(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    cell = cells_for("depth", Options(device="cuda"))[0]
    ids = {}
    for name in ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None, n=name: n)
        assert cell.config()["gpu"] == name
        ids[name] = cell.id
        assert device.device_name(torch.device("cuda", 3)) == f"{name} (cuda:3 of 8 visible)"
    assert len(set(ids.values())) == 2
    assert "gpu" not in cells_for("depth", Options(device="cpu"))[0].config()  # CPU cells keep their ids


# 13. the ceiling is a bound: best over sizes, the ISA peak where knowable, clipped and flagged

def test_ceiling_grows_the_product_while_the_rate_grows(monkeypatch):
    measured = []
    rates = {1024: 100e9, 2048: 150e9, 4096: 160e9}
    monkeypatch.setattr(ceiling, "matmul_rate", lambda d, t, n: measured.append(n) or rates[n])
    top = ceiling.ceiling.__wrapped__("cpu", "float32", 2)
    assert measured == [1024, 2048, 4096] and top["gflop_per_s"] == 160
    assert top["method"] == "fastest float32 n x n matmul over n = 1024, 2048, 4096 (best of 3 each): n = 4096"
    rates[2048] = 105e9  # no longer growing: 4096 is not tried
    measured.clear()
    assert ceiling.ceiling.__wrapped__("cpu", "float32", 2)["gflop_per_s"] == 105 and measured == [1024, 2048]


def test_isa_peak_from_the_instruction_set_and_the_maximum_clock():
    avx512 = "flags\t\t: fpu sse avx avx2 fma avx512f\n"
    peak = ceiling.isa_peak(2, cpuinfo=avx512, max_khz=3_000_000)
    assert peak["gflop_per_s"] == 2 * 16 * 2 * 2 * 3.0
    assert peak["method"] == "2 threads x 16 fp32 lanes x 2 (FMA) x 2 FMA units x 3.00 GHz"
    assert ceiling.isa_peak(1, cpuinfo="flags\t: avx2 fma\n", max_khz=2_000_000)["gflop_per_s"] == 64
    assert ceiling.isa_peak(1, cpuinfo="flags\t: sse2\n", max_khz=2_000_000) is None


def test_a_fraction_above_the_ceiling_is_clipped_and_flagged(monkeypatch):
    monkeypatch.setattr(ceiling, "ceiling", lambda *a, **k: {"gflop_per_s": 126.7, "method": "m",
                                                             "isa_peak_gflop_per_s": None, "isa_method": None})
    # the numbers: VGG-D-BN training at 156.5 GFLOP/s against a 126.7 GFLOP/s "ceiling"
    out = ceiling.utilisation(156.5 / 3, 1.0, CPU, "float32")
    assert out["ceiling_fraction"] == 1.0 and out["ceiling_exceeded"]
    assert out["ceiling_fraction_unclipped"] == pytest.approx(156.5 / 126.7)
    assert not ceiling.utilisation(100 / 3, 1.0, CPU, "float32")["ceiling_exceeded"]


def test_real_ceiling_on_cpu_is_cached_and_bf16_utilisation(monkeypatch):
    a = ceiling.ceiling("cpu", "float32", 1, sizes=(128, 256))
    assert a["gflop_per_s"] > 0 and ceiling.ceiling("cpu", "float32", 1, sizes=(128, 256)) is a
    monkeypatch.setitem(ceiling.SIZES, "cpu", (128, 256))
    out = ceiling.utilisation(0.01, 100.0, CPU, "bfloat16")
    assert out["ceiling_dtype"] == "bfloat16" and 0 < out["ceiling_fraction"] <= 1
    assert out["train_gflop_per_s"] == pytest.approx(3.0)


# bf16 autocast training on CPU, through BN, LRN, the loss and evaluation

@pytest.mark.parametrize("config,bn", [("A-LRN", False), ("A", True)])
def test_bf16_training_on_cpu(tiny, config, bn):
    result = train(model(config, batch_norm=bn), tiny, SPEC.replace(epochs=1, amp="bf16", lr=0.01), CPU)
    assert trainer.autocast_dtype(SPEC.replace(amp="bf16"), CPU) == torch.bfloat16
    assert result["status"] == "unjudged" and math.isfinite(result["history"][0]["train_loss"])
    assert all(math.isfinite(v) for v in result["test"].values())


# `vggbench bench throughput` and `vggbench bench pipeline`, end to end

def test_bench_throughput_end_to_end(capsys):
    assert cli.main(["bench", "throughput", "A", "--width", "0.125", "--batch-size", "8", "--device", "cpu",
                     "--amp", "off", "--repeats", "2", "--window", "0.01"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("A-w0.125 at 32px, batch 8, float32, channels_last=True, compile=False, CPU:")
    assert out.count("2 windows of") == 2 and "of the float32 ceiling" in out and "float32 math ieee" in out


def test_bench_pipeline_end_to_end(tmp_path, capsys):
    import pandas as pd

    assert cli.main(["bench", "pipeline", "A", "--width", "0.125", "--dataset", "synthetic", "--train-subset", "96",
                     "--batch-size", "32", "--repeats", "1", "--workers", "0", "--device", "cpu",
                     "--results-dir", str(tmp_path)]) == 0
    row = pd.read_csv(tmp_path / "pipeline.csv").iloc[0]
    assert (row["train_images"], row["steps"], row["batch_size"]) == (96, 3, 32)
    assert row["vggbench_s"] > 0 and row["typical_s"] > 0 and row["ceiling_s"] > 0
    assert f"written: {tmp_path / 'pipeline.csv'}" in capsys.readouterr().out
