"""Measurement: FLOP counters cross-checked, the layer table, throughput bookkeeping."""
import pytest
import torch

from vggbench import device, measure
from vggbench.measure import FlopMismatch, count_flops, layer_table, throughput
from vggbench.models import build_model


def small(**kw):
    return build_model(**{"config": "A", "width": 0.125, "image_size": 32, "num_classes": 10, "head": "linear", **kw})


def test_two_counters_agree_and_bn_is_not_conv_linear_work():
    flops = count_flops(small(batch_norm=True))
    assert flops["gflops"] == pytest.approx(2 * flops["gmacs"], rel=1e-9)
    assert flops["fvcore_total_gmacs"] > flops["gmacs"]  # fvcore counts BN too; we don't


def test_disagreement_fails_loudly(monkeypatch):
    monkeypatch.setattr(measure, "torch_flops", lambda model: 1.0)
    with pytest.raises(FlopMismatch, match="disagree by more than 1%"):
        count_flops(small())


def test_layer_table_rows_sum_to_totals():
    model = small(batch_norm=True)
    rows = layer_table(model)
    assert sum(r["params"] for r in rows) == sum(p.numel() for p in model.parameters())
    conv_linear = sum(r["macs"] for r in rows if r["type"] in ("Conv2d", "Linear"))
    assert conv_linear == pytest.approx(count_flops(model)["gmacs"] * 1e9)
    assert rows[0] == {"layer": "features.0", "type": "Conv2d", "output": "8x32x32", "params": 224, "macs": 221184}
    assert rows[-1]["output"] == "10"


@pytest.mark.parametrize("train", [True, False])
def test_throughput_reports_median_and_spread(train):
    out = throughput(small(), torch.device("cpu"), batch_size=8, train=train, warmup=1, repeats=3)
    assert out["batch_size"] == 8 and out["repeats"] == 3
    assert 0 < out["images_per_s_min"] <= out["images_per_s"] <= out["images_per_s_max"]
    assert out["peak_mem_mb"] is None  # CPU: not measured rather than a made-up number


def test_throughput_halves_batch_on_out_of_memory(monkeypatch):
    calls = []

    def fake_time_steps(step, device, warmup, repeats, steps_per_repeat=1):
        step()
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [0.1] * repeats

    monkeypatch.setattr(measure, "time_steps", fake_time_steps)
    out = throughput(small(), torch.device("cpu"), batch_size=16, train=True, repeats=2)
    assert out["batch_size"] == 4
    assert out["images_per_s"] == pytest.approx(40)


def test_throughput_reraises_other_errors(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(measure, "time_steps", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        throughput(small(), torch.device("cpu"), batch_size=16, train=True)


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA is not available: use --device cpu"):
        device.resolve_device("cuda")
