"""The dtype a cell trains in (issue 25): `--amp auto` is bf16 where the CPU multiplies bfloat16
natively (AMX, AVX512-BF16) and on CUDA, float32 elsewhere; the dtype that runs is part of the cell's
identity, recorded, shown in the tables, and the ceiling its throughput is measured against."""
import pytest
import torch

from vggbench import ceiling, cli, device, records, speed, trainer
from vggbench.cells import cells_for
from vggbench.models import build_model
from vggbench.options import Options
from vggbench.trainer import TrainSpec

CPU = torch.device("cpu")
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN4 = "processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_vnni\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f avx512_vnni\n"


def test_bf16_units_from_the_cpu_flags():
    assert device.cpu_bf16_units(SAPPHIRE_RAPIDS) == "AMX"
    assert device.cpu_bf16_units(ZEN4) == "AVX512-BF16"
    assert device.cpu_bf16_units(SKYLAKE) is None
    assert device.cpu_bf16_units("processor\t: 0\nFeatures\t: fp asimd\n") is None  # no x86 flags line


def test_without_cpuinfo_torch_probes_the_cpu(monkeypatch):
    monkeypatch.setattr(device, "cpu_flags", lambda cpuinfo=None: set())  # /proc/cpuinfo unreadable
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert device.cpu_bf16_units() == "AVX512-BF16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert device.cpu_bf16_units() is None


@pytest.mark.parametrize("units,auto", [("AMX", torch.bfloat16), ("AVX512-BF16", torch.bfloat16), (None, None)])
def test_auto_is_bf16_only_on_cpus_with_bf16_units(monkeypatch, units, auto):
    monkeypatch.setattr(trainer, "cpu_bf16_units", lambda: units)
    assert trainer.autocast_dtype(TrainSpec(), CPU) == auto
    assert trainer.autocast_dtype(TrainSpec(amp="off"), CPU) is None
    assert trainer.autocast_dtype(TrainSpec(amp="bf16"), CPU) == torch.bfloat16
    assert trainer.autocast_dtype(TrainSpec(), torch.device("cuda")) == torch.bfloat16  # CUDA as before
    assert trainer.autocast_dtype(TrainSpec(amp="off"), torch.device("cuda")) is None
    assert trainer.amp_name(TrainSpec(), CPU) == ("bfloat16" if auto else "float32")


def depth_d(**options):
    return next(c for c in cells_for("depth", Options(device="cpu", **options)) if c.case == "D")


@pytest.mark.parametrize("units", ["AMX", None])
def test_the_dtype_that_runs_is_the_identity(monkeypatch, units):
    monkeypatch.setattr(trainer, "cpu_bf16_units", lambda: units)
    auto, off, bf16 = depth_d(), depth_d(amp="off"), depth_d(amp="bf16")
    assert off.config()["train"]["amp"] == "float32" and bf16.config()["train"]["amp"] == "bfloat16"
    assert off.id != bf16.id  # a bf16 record never answers a float32 request
    # auto is the cell of the dtype it resolves to here: a record is reused for the same computation
    assert auto.id == (bf16.id if units else off.id)
    assert auto.config()["train"]["amp"] == ("bfloat16" if units else "float32")
    assert dict(off.overrides)["amp"] == "off" and "amp" not in dict(auto.overrides)


def test_the_record_and_the_table_name_the_dtype():
    depth_d = {"ablation": "depth", "case": "D", "tuned": False}  # the table row it is read as
    config = {"model": dict.fromkeys(("config", "batch_norm", "kernels", "init", "head", "width")),
              "train": {"optimizer": "sgd", "epochs": 1, "amp": "bfloat16"}, "data": {"dataset": "synthetic"},
              "seed": 0}
    row = records.flatten({"config": config, "amp": "bfloat16"}, depth_d)
    assert row["amp"] == "bfloat16" and "amp" in records.table([row]).columns
    config["train"]["amp"] = "auto"  # a record from before: the option as given, not a guess
    assert records.flatten({"config": config}, depth_d)["amp"] == "auto"


@pytest.mark.parametrize("amp,dtype", [("bf16", "bfloat16"), ("off", "float32")])
def test_the_ceiling_is_measured_in_the_dtype_that_runs(monkeypatch, amp, dtype):
    asked = []

    def fake_ceiling(device_str, dtype_name="float32", threads=None, sizes=None):
        asked.append((device_str, dtype_name, threads))
        return {"gflop_per_s": 1e6, "method": "m", "isa_peak_gflop_per_s": None, "isa_method": None}

    monkeypatch.setattr(ceiling, "ceiling", fake_ceiling)
    model = build_model(config="A", width=0.125, image_size=32, num_classes=10, head="linear")
    out = speed.model_speed(model, CPU, 4, TrainSpec(amp=amp), warmup=1, repeats=1, window_s=0.0, gflops=0.01)
    assert asked == [("cpu", dtype, torch.get_num_threads())]  # same device and thread count as the model
    assert out["ceiling_dtype"] == dtype and 0 < out["ceiling_fraction"] <= 1


def test_bench_throughput_prints_the_ceiling_dtype(capsys, monkeypatch):
    monkeypatch.setitem(ceiling.SIZES, "cpu", (128, 256))  # the real ceiling's products, smaller
    assert cli.main(["bench", "throughput", "A", "--width", "0.125", "--batch-size", "8", "--device", "cpu",
                     "--amp", "bf16", "--repeats", "2", "--window", "0.01"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("A-w0.125 at 32px, batch 8, bfloat16, channels_last=True, compile=False, CPU:")
    assert "of the bfloat16 ceiling" in out and "fastest bfloat16 n x n matmul" in out and "(--amp bf16; CPU bf16 units:" in out


def test_training_steps_do_not_fault_their_memory_in_again():
    """set_math_mode on CPU keeps freed memory in the process (device.keep_freed_memory): by default
    glibc gave each step's activations back to the kernel (2,000-7,400 page faults a step here)."""
    import resource

    import torch.nn.functional as F

    if not device.keep_freed_memory():
        pytest.skip("not glibc")
    device.set_math_mode(CPU)
    model = build_model(config="A", batch_norm=True, width=0.25, image_size=32, num_classes=10, head="linear")
    model = model.to(memory_format=torch.channels_last)
    opt = trainer.make_optimizer(model, TrainSpec())
    x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))

    def step():
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    faults = []
    for _ in range(12):  # the heap grows to the step's peak (after other tests' allocations) in a few rounds
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            step()
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
        if faults[-1] < 100:
            break
    assert min(faults) < 100, faults
