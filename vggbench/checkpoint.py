"""Checkpoints: the whole training state of a cell after an epoch, so a killed run resumes.

File format: one line with the SHA-256 of the payload, then the payload (torch.save bytes).
Written atomically (temporary file, fsync, rename). A checkpoint whose checksum fails is set
aside (renamed *.corrupt) and the cell starts over: a damaged file is never trusted.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from .records import atomic_write_bytes


class Checkpoint:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def save(self, state: dict) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        payload = buf.getvalue()
        atomic_write_bytes(self.path, hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)

    def load(self, map_location=None) -> dict | None:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return None
        digest, _, payload = blob.partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode() != digest:
            os.replace(self.path, self.path.with_name(self.path.name + ".corrupt"))
            return None
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
