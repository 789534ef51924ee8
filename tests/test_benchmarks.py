"""pytest-benchmark timings of the pieces of an epoch (run them without xdist):

    pytest tests/test_benchmarks.py --benchmark-enable -p no:xdist

In the ordinary test run (benchmarks disabled by pyproject's addopts) each benchmarked function
runs once and its result is checked, so the pieces stay correct. The side-by-side epoch comparison
is `vggbench bench pipeline`.
"""
import pytest
import torch
import torch.nn.functional as F

from vggbench.data import synthetic
from vggbench.bench import _PILDataset
from vggbench.loader import DeviceLoader
from vggbench.models import build_model

BATCH = 128


@pytest.fixture(scope="module")
def images():
    return synthetic.generate(1024, 32, seed=0)


def test_device_loader_batch(benchmark, images):
    """(a) one batch: gather + batched crop/flip + normalise, all tensor ops."""
    x, y = images
    loader = DeviceLoader(x, y, BATCH, (0.5,) * 3, (0.25,) * 3, torch.device("cpu"), train=True)
    it = iter(loader)
    xb, yb = benchmark(next, it)
    assert xb.shape == (BATCH, 3, 32, 32) and xb.dtype == torch.float32 and yb.shape == (BATCH,)


def test_pil_pipeline_batch(benchmark, images):
    """(b) one batch the typical way: PIL image per sample, torchvision transforms per sample."""
    import torchvision.transforms as T

    x, y = images
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize((0.5,) * 3, (0.25,) * 3)])
    ds = _PILDataset(x, y, tf)

    def batch():
        items = [ds[i] for i in range(BATCH)]
        return torch.stack([a for a, _ in items]), torch.tensor([b for _, b in items])

    xb, yb = benchmark(batch)
    assert xb.shape == (BATCH, 3, 32, 32) and torch.equal(yb, y[:BATCH])


def test_train_step(benchmark, images):
    """(c) the model's own cost: one training step on a batch already in place."""
    torch.manual_seed(0)
    model = build_model(config="A", batch_norm=True, width=0.25, image_size=32, num_classes=10,
                        head="linear").to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xb = torch.randn(BATCH, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    yb = images[1][:BATCH]

    def step():
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    assert torch.isfinite(benchmark(step))
