"""Device-resident batches: the dataset lives on the training device as uint8, once.

Why (the tricks, named):
- uint8 on the device: 4x less memory than float, moved once, never re-decoded (no PIL per sample).
- each epoch one random permutation drawn on the device, batches by index gather.
- augmentation as batched tensor ops on the device: random crop with zero padding (torchvision's
  RandomCrop(padding=4) default fill) and horizontal flip, one offset/flip per image.
- ImageNet-sized data: the paper's scale jittering (rescale so the shorter side is S drawn from
  [256, 512], take a random 224 crop) or torchvision-style random-resized crop, both as ONE batched
  affine resampling (affine_grid + grid_sample) with a per-image box; evaluation takes the centre.
- data too large for the device (ImageNet: a memory-mapped uint8 cache) is read in chunks: chunk
  order and the order inside each chunk are shuffled every epoch (block shuffling). The next chunk
  is read ahead by a background thread while the current one trains: on CUDA it is read into pinned
  memory and copied on a side stream the training stream then waits for, so neither the disk read
  nor the host-to-device copy leaves the GPU idle between chunks.
- the paper's "random RGB colour shift" (section 3.1, AlexNet's PCA lighting noise): one draw per
  image, added to every pixel as one batched matmul, where the training spec asks for it.
- normalisation after augmentation, in float, in channels_last for convolution speed.
No per-sample Python runs in the loop; the same code runs on CPU.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import torch

from .device import cuda_index, free_bytes


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop (zero padding `pad`) and horizontal flip of a B x C x H x W batch.

    One gather: for every output pixel the linear index of its source pixel in the padded image,
    with the crop offset and the flip folded in (cheaper than an advanced-index crop plus a flip)."""
    b, c, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
    wp = w + 2 * pad
    oy = torch.randint(0, 2 * pad + 1, (b, 1, 1), device=dev, generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b, 1, 1), device=dev, generator=generator)
    flip = torch.rand(b, 1, 1, device=dev, generator=generator) < 0.5
    cols = torch.arange(w, device=dev).view(1, 1, w)
    cols = torch.where(flip, w - 1 - cols, cols) + ox
    rows = torch.arange(h, device=dev).view(1, h, 1) + oy
    index = (rows * wp + cols).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


def affine_crop(x: torch.Tensor, half_w: torch.Tensor, half_h: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
                flip: torch.Tensor, out_size: int) -> torch.Tensor:
    """Resample a box of every image (centre cx, cy and half-extents in [-1, 1] image units, optionally
    mirrored) to out_size x out_size, bilinearly: crop + resize + flip in one batched op."""
    b = x.shape[0]
    sx = torch.where(flip, -half_w, half_w)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, cx], 1), torch.stack([zero, half_h, cy], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, (b, x.shape[1], out_size, out_size), align_corners=False)
    return torch.nn.functional.grid_sample(x.float(), grid, mode="bilinear", padding_mode="reflection",
                                           align_corners=False)


def scale_jitter_crop(x: torch.Tensor, out_size: int, generator: torch.Generator,
                      s_range: tuple[int, int] = (256, 512), crop: int = 224) -> torch.Tensor:
    """The paper's training augmentation (section 3.1): the image is rescaled so its shorter side is S,
    S ~ U[256, 512] per image, a random crop x crop is taken and mirrored with p=0.5. The stored image
    stands for the whole rescaled image, so the crop covers crop/S of its side."""
    b, dev = x.shape[0], x.device
    s = s_range[0] + torch.rand(b, device=dev, generator=generator) * (s_range[1] - s_range[0])
    half = crop / s
    cx = (torch.rand(b, device=dev, generator=generator) * 2 - 1) * (1 - half)
    cy = (torch.rand(b, device=dev, generator=generator) * 2 - 1) * (1 - half)
    flip = torch.rand(b, device=dev, generator=generator) < 0.5
    return affine_crop(x, half, half, cx, cy, flip, out_size)


def random_resized_crop(x: torch.Tensor, out_size: int, generator: torch.Generator,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """torchvision's RandomResizedCrop + RandomHorizontalFlip, batched: area fraction ~ U[scale],
    log aspect ratio ~ U[log ratio], box clipped to the image."""
    b, dev = x.shape[0], x.device
    area = scale[0] + torch.rand(b, device=dev, generator=generator) * (scale[1] - scale[0])
    logr = math.log(ratio[0]) + torch.rand(b, device=dev, generator=generator) * (math.log(ratio[1]) - math.log(ratio[0]))
    r = logr.exp()
    half_w = (area * r).sqrt().clamp(max=1.0)
    half_h = (area / r).sqrt().clamp(max=1.0)
    cx = (torch.rand(b, device=dev, generator=generator) * 2 - 1) * (1 - half_w)
    cy = (torch.rand(b, device=dev, generator=generator) * 2 - 1) * (1 - half_h)
    flip = torch.rand(b, device=dev, generator=generator) < 0.5
    return affine_crop(x, half_w, half_h, cx, cy, flip, out_size)


COLOUR_STD = 0.1  # AlexNet's: each alpha_i ~ a normal of mean 0 and std 0.1


def colour_shift(n: int, values: torch.Tensor, vectors: torch.Tensor, generator: torch.Generator,
                 std: float = COLOUR_STD) -> torch.Tensor:
    """The colour shift of n images (n x 3, in [0, 1] units): AlexNet's "to each RGB image pixel we
    add [p1, p2, p3][a1 l1, a2 l2, a3 l3]^T", p_i and l_i the eigenvectors and eigenvalues of the
    training pixels' RGB covariance (data.pixel_pca), a_i drawn once per image ~ normal(0, std)."""
    alpha = torch.randn(n, 3, device=values.device, generator=generator) * std
    return (alpha * values) @ vectors.T


POLICIES = ("crop-flip", "scale-jitter", "random-resized-crop")


class DeviceLoader:
    """Iterates (normalised float images, labels) batches of uint8 tensors held on `device`."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, mean, std, device: torch.device,
                 train: bool = False, augment: bool = True, pad: int = 4, seed: int = 0,
                 channels_last: bool = True, policy: str = "auto", resident_bytes: int | None = None,
                 scale: tuple[int, int] | None = None, crop: int | None = None,
                 colour_pca: tuple[torch.Tensor, torch.Tensor] | None = None):
        """policy: "auto" (crop-flip up to 64 px, scale-jitter above), or one of POLICIES.
        scale: the paper's training scale (Smin, Smax) in pixels, with `crop` the model's input size:
        training takes scale_jitter_crop's crops, evaluation the centre crop at Q = (Smin + Smax) / 2
        (the policy is then scale-jitter). None: the stored size is the model's.
        colour_pca: (eigenvalues, eigenvectors) of the training pixels (data.pixel_pca): training
        batches get the paper's colour shift (colour_shift); None: none.
        resident_bytes: the most image bytes kept on the device; larger data is read in chunks
        (default: everything on the device, except on CUDA where 40% of free memory is the limit)."""
        if scale is not None:
            policy = "scale-jitter"
        elif policy == "auto":
            policy = "crop-flip" if x.shape[-1] <= 64 else "scale-jitter"
        if policy not in POLICIES:
            raise ValueError(f"unknown augmentation policy {policy!r}: choose auto or one of {', '.join(POLICIES)}")
        self.policy = policy
        if device.type == "cuda":  # an index: the prefetch thread's current device is not this thread's
            device = torch.device("cuda", cuda_index(device))
        if resident_bytes is None and device.type == "cuda":
            resident_bytes = int(0.4 * free_bytes(device))
        self.resident = resident_bytes is None or x.numel() * x.element_size() <= resident_bytes
        # chunks of half the allowed bytes: the chunk in use and the one being loaded fit together
        self.chunk = len(y) if self.resident else max(batch_size, resident_bytes // 2 // max(1, x[0].numel()))
        self.x = x.to(device, non_blocking=True) if self.resident else x
        self.y = y.to(device, non_blocking=True) if self.resident else y
        self.batch_size, self.device, self.train = batch_size, device, train
        self.augment, self.pad = augment and train, pad
        self.scale, self.crop = scale, crop or x.shape[-1]
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.colour = None if colour_pca is None or not train else tuple(t.to(device) for t in colour_pca)

    def __len__(self) -> int:
        n = len(self.y)
        # Training drops the last partial batch (a batch of 1 breaks BatchNorm); evaluation sees all.
        return n // self.batch_size if self.train and n >= self.batch_size else -(-n // self.batch_size)

    def _prepare(self, xb: torch.Tensor) -> torch.Tensor:
        size = xb.shape[-1]
        if self.scale is not None:
            if self.augment:
                xb = scale_jitter_crop(xb, self.crop, self.generator, self.scale, self.crop)
            else:  # the centre crop at Q = (Smin + Smax) / 2
                half = torch.full((len(xb),), 2 * self.crop / sum(self.scale), device=xb.device)
                zero = torch.zeros_like(half)
                xb = affine_crop(xb, half, half, zero, zero, zero.bool(), self.crop)
        elif self.augment and self.policy == "crop-flip":
            xb = random_crop_flip(xb, self.pad, self.generator)
        elif self.augment and self.policy == "scale-jitter":
            xb = scale_jitter_crop(xb, size, self.generator)
        elif self.augment:
            xb = random_resized_crop(xb, size, self.generator)
        xb = xb.float()
        if self.colour is not None:  # in pixel units (x 255), before normalisation, as AlexNet adds it
            xb = xb + (255 * colour_shift(len(xb), *self.colour, self.generator)).view(-1, 3, 1, 1)
        return ((xb - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def _chunks(self):
        """(images, labels) on the device: the whole set, or shuffled chunks of a host/memmap set,
        each read (and copied) by a background thread while the previous one is in use."""
        n = len(self.y)
        if self.resident:
            yield self.x, self.y
            return
        starts = list(range(0, n, self.chunk))
        if self.train:
            starts = [starts[i] for i in torch.randperm(len(starts), device=self.device, generator=self.generator).tolist()]
        copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vggbench-prefetch") as pool:
            ahead = pool.submit(self._fetch, starts[0], copy_stream)
            for i in range(len(starts)):
                x, y, copied = ahead.result()
                if i + 1 < len(starts):
                    ahead = pool.submit(self._fetch, starts[i + 1], copy_stream)  # read ahead
                if copied is not None:  # the training stream waits for the copy, not the host
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(copied)
                    x.record_stream(current)  # x was allocated on the copy stream
                    y.record_stream(current)
                yield x, y

    def _fetch(self, start: int, copy_stream):
        """One chunk on the device (in the prefetch thread): read from the host/memmap set; on CUDA
        into pinned memory, then copied on `copy_stream`; returns (x, y, the copy's event or None)."""
        x, y = self.x[start:start + self.chunk], self.y[start:start + self.chunk]
        if copy_stream is None:
            return x.clone(), y.clone(), None  # clone: the disk read happens here, not in training
        with torch.cuda.device(self.device), torch.cuda.stream(copy_stream):
            x = x.pin_memory().to(self.device, non_blocking=True)
            y = y.pin_memory().to(self.device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(copy_stream)
        return x, y, copied

    def __iter__(self):
        carry_x = carry_y = None  # a partial batch at a chunk's end joins the next chunk
        for x, y in self._chunks():
            if carry_x is not None:
                x, y = torch.cat([carry_x, x]), torch.cat([carry_y, y])
            n = len(y)
            order = (torch.randperm(n, device=self.device, generator=self.generator) if self.train
                     else torch.arange(n, device=self.device))
            full = n // self.batch_size * self.batch_size
            for i in range(0, full, self.batch_size):
                idx = order[i:i + self.batch_size]
                yield self._prepare(x[idx]), y[idx]
            carry_x, carry_y = x[order[full:]], y[order[full:]]
        if len(carry_y) and not (self.train and len(self.y) >= self.batch_size):
            yield self._prepare(carry_x), carry_y  # evaluation sees every image
