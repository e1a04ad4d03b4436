"""Near-duplicate images, grouped so that a split never puts copies on both sides.

SkinCAP draws many images from Fitzpatrick17k, which is known to hold duplicates (the same
photo re-encoded, resized or lightly cropped). Two examples belong to one group when

- their perceptual hashes (pHash: whether each of the 16x16 lowest DCT frequencies of a
  64x64 greyscale copy is above their median, 256 bits) differ in at most
  ``max_distance`` bits, or
- they name the same original file (SkinCAP's ``ori_file_path``),

and groups are closed transitively (union-find). The split then assigns whole groups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_MAX_DISTANCE",
    "HASH_BITS",
    "DuplicateGroups",
    "group_duplicates",
    "perceptual_hash",
]

#: Bits in a hash.
HASH_BITS = 256
#: Hamming distance (of 256 bits) under which two pHashes count as the same photo. Measured
#: on synthetic lesion photos (which look far more alike than real ones): resized or
#: re-encoded copies differ by 0-2 bits and a 5-pixel crop by ~36, while the closest two
#: different photos of 40 differ by 62 (mean 113).
DEFAULT_MAX_DISTANCE = 32

# Bits set in each byte value, for a vectorised popcount.
_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def perceptual_hash(path: Path) -> bytes:
    """The 256-bit pHash of the image at ``path`` (imagehash's DCT hash), as 32 bytes."""
    import imagehash
    from PIL import Image

    with Image.open(path) as image:
        bits = imagehash.phash(image, hash_size=16).hash.flatten()
    return np.packbits(bits.astype(np.uint8)).tobytes()


@dataclass(frozen=True, slots=True)
class DuplicateGroups:
    """Every example's group, and the groups with more than one member."""

    group_of: dict[str, int]
    groups: tuple[tuple[str, ...], ...]

    @property
    def duplicates(self) -> tuple[tuple[str, ...], ...]:
        return tuple(group for group in self.groups if len(group) > 1)


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def _hamming_to_all(hashes: npt.NDArray[np.uint8], index: int) -> npt.NDArray[np.int64]:
    """Bits differing between hash ``index`` and every hash after it (rows of bytes)."""
    xor = np.bitwise_xor(hashes[index + 1 :], hashes[index])
    counts: npt.NDArray[np.int64] = _POPCOUNT[xor].sum(axis=1, dtype=np.int64)
    return counts


def group_duplicates(
    ids: Sequence[str],
    images: Sequence[Path],
    sources: Sequence[str | None],
    *,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    hasher: Callable[[Path], bytes] = perceptual_hash,
    progress: bool = False,
) -> DuplicateGroups:
    """Group examples by near-identical pixels or a shared original file."""
    from tqdm import tqdm

    if not len(ids) == len(images) == len(sources):
        raise ValueError("ids, images and sources must have the same length")
    sets = _UnionFind(len(ids))
    by_source: dict[str, int] = {}
    for index, source in enumerate(sources):
        if source:
            sets.union(by_source.setdefault(source.strip(), index), index)
    digests = [
        hasher(path) for path in tqdm(images, desc="hashing", unit="image", disable=not progress)
    ]
    hashes = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(ids), -1)
    for index in range(len(ids) - 1):
        close = np.nonzero(_hamming_to_all(hashes, index) <= max_distance)[0]
        for offset in close:
            sets.union(index, index + 1 + int(offset))
    members: dict[int, list[str]] = {}
    for index, example_id in enumerate(ids):
        members.setdefault(sets.find(index), []).append(example_id)
    groups = tuple(sorted(tuple(sorted(group)) for group in members.values()))
    group_of = {example_id: number for number, group in enumerate(groups) for example_id in group}
    return DuplicateGroups(group_of=group_of, groups=groups)
