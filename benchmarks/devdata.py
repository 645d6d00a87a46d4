"""CIFAR-10 in parts small enough to carry to a GPU machine that has no internet, and back into the official layout.

The official archive (about 170 MB, pickles of raw pixels) is over what one call to a lent GPU machine can
carry. ``pack`` codes the 60,000 images losslessly: each pixel minus the LOCO-I (JPEG-LS) median-edge
prediction from its left, upper and upper-left neighbours, then LZMA, which is about two thirds of the raw
size; the stream is cut into parts of ``--part-mb`` megabytes, each carried by its own call. ``unpack``
joins the parts, checks each part's and each array's SHA-256 against the manifest, decodes, and writes
``cifar-10-batches-py/`` in the official "python version" layout (five training batches of 10,000, the test
batch, ``batches.meta``), which alkit's CIFAR-10 loader then reads like any local copy.

    python -m benchmarks.devdata pack --out .devdata/cifar --part-mb 25,57
    python -m benchmarks.devdata unpack --parts .devdata/cifar/part* --to DATA_DIR
"""
from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import pickle
from pathlib import Path

import numpy as np

FOLDER, META = "cifar-10-batches-py", "batches.meta"
MANIFEST = "cifar-manifest.json"


def sha256(data: bytes | np.ndarray) -> str:
    return hashlib.sha256(data.tobytes() if isinstance(data, np.ndarray) else data).hexdigest()


def _neighbours(x: np.ndarray, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The left, upper and upper-left pixels of (i, j) for every image and channel (0 outside the image)."""
    zero = np.zeros(x.shape[:1] + x.shape[3:], dtype=np.int16)
    left = x[:, i, j - 1].astype(np.int16) if j else zero
    up = x[:, i - 1, j].astype(np.int16) if i else zero
    up_left = x[:, i - 1, j - 1].astype(np.int16) if i and j else zero
    return left, up, up_left


def _median_edge(left: np.ndarray, up: np.ndarray, up_left: np.ndarray) -> np.ndarray:
    lo, hi = np.minimum(left, up), np.maximum(left, up)
    return np.where(up_left >= hi, lo, np.where(up_left <= lo, hi, left + up - up_left))


def encode(images: np.ndarray) -> np.ndarray:
    """Residuals (uint8, same shape) of ``images`` (N, H, W, C uint8) against the median-edge prediction."""
    x = images.astype(np.int16)
    left = np.zeros_like(x)
    left[:, :, 1:] = x[:, :, :-1]
    up = np.zeros_like(x)
    up[:, 1:] = x[:, :-1]
    up_left = np.zeros_like(x)
    up_left[:, 1:, 1:] = x[:, :-1, :-1]
    return ((x - _median_edge(left, up, up_left)) % 256).astype(np.uint8)


def decode(residuals: np.ndarray) -> np.ndarray:
    """The inverse of :func:`encode`: pixel by pixel in raster order, every image and channel at once."""
    x = np.zeros(residuals.shape, dtype=np.uint8)
    for i in range(residuals.shape[1]):
        for j in range(residuals.shape[2]):
            pred = _median_edge(*_neighbours(x, i, j))
            x[:, i, j] = (residuals[:, i, j].astype(np.int16) + pred) % 256
    return x


def pack(out: Path, part_mb: list[float], data_dir: Path | None = None, strict: bool = True) -> list[Path]:
    """Code this machine's CIFAR-10 into ``out``: the parts and a manifest with their hashes. ``part_mb``: the
    parts' sizes in megabytes, in order; the last one repeats for the rest of the stream."""
    from alkit.data import cifar10

    ds = cifar10.load(data_dir, download_if_missing=False, progress=False, strict=strict)
    arrays = {"x_train": ds.x_train, "y_train": ds.y_train.astype(np.uint8), "x_test": ds.x_test,
              "y_test": ds.y_test.astype(np.uint8)}
    raw = b"".join(encode(a).tobytes() if a.ndim == 4 else a.tobytes() for a in arrays.values())
    stream = lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)
    out.mkdir(parents=True, exist_ok=True)
    parts, start = [], 0
    while start < len(stream):
        size = int(part_mb[min(len(parts), len(part_mb) - 1)] * 1e6)
        part = out / f"part{len(parts)}" / f"cifar-part{len(parts)}.bin"  # a folder each, to carry one at a time
        part.parent.mkdir(exist_ok=True)
        part.write_bytes(stream[start:start + size])
        parts.append(part)
        start += size
    manifest = {"arrays": {k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": sha256(a)}
                           for k, a in arrays.items()},
                "classes": list(ds.classes), "parts": [{"name": p.name, "sha256": sha256(p.read_bytes())} for p in parts]}
    (out / "part0" / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return parts


def unpack(part_dirs: list[Path], dest: Path) -> Path:
    """Join, check and decode the parts found in ``part_dirs``; write the official layout under ``dest``."""
    found = {p.name: p for d in part_dirs for p in Path(d).glob("cifar-*")}
    if MANIFEST not in found:
        raise SystemExit(f"devdata: no {MANIFEST} in {', '.join(map(str, part_dirs))}")
    manifest = json.loads(found[MANIFEST].read_text())
    chunks = []
    for part in manifest["parts"]:
        if part["name"] not in found:
            raise SystemExit(f"devdata: part {part['name']} is missing from {', '.join(map(str, part_dirs))}")
        data = found[part["name"]].read_bytes()
        if sha256(data) != part["sha256"]:
            raise SystemExit(f"devdata: part {part['name']} is damaged (SHA-256 differs from the manifest)")
        chunks.append(data)
    raw = memoryview(lzma.decompress(b"".join(chunks)))
    arrays, offset = {}, 0
    for key, spec in manifest["arrays"].items():
        n = int(np.prod(spec["shape"]))
        a = np.frombuffer(raw[offset:offset + n], dtype=np.uint8).reshape(spec["shape"])
        offset += n
        arrays[key] = decode(a) if a.ndim == 4 else a
        if sha256(arrays[key]) != spec["sha256"]:
            raise SystemExit(f"devdata: decoded {key} differs from the packed one (SHA-256)")
    return write_folder(dest, arrays, manifest["classes"])


def write_folder(dest: Path, arrays: dict[str, np.ndarray], classes: list[str]) -> Path:
    """``dest/cifar-10-batches-py/`` in the official layout, from N x 32 x 32 x 3 images and their labels."""
    folder = dest / FOLDER
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, x: np.ndarray, y: np.ndarray) -> None:
        data = np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), -1))  # channel-major rows
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in y], b"data": data,
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(len(x))]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))

    per = -(-len(arrays["x_train"]) // 5)  # five training batches, as the official archive has
    for b in range(5):
        s = slice(b * per, (b + 1) * per)
        write(f"data_batch_{b + 1}", arrays["x_train"][s], arrays["y_train"][s])
    write("test_batch", arrays["x_test"], arrays["y_test"])
    meta = {b"label_names": [c.encode() for c in classes], b"num_cases_per_batch": per, b"num_vis": 3072}
    (folder / META).write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="code this machine's CIFAR-10 into parts")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--part-mb", default="57", help="the parts' sizes in megabytes, comma-separated; the last "
                                                   "repeats (default 57)")
    p.add_argument("--data-dir", type=Path, help="where CIFAR-10 is (default: where alkit finds it)")
    u = sub.add_parser("unpack", help="join, check and decode the parts into the official layout")
    u.add_argument("--parts", type=Path, nargs="+", required=True, help="folders holding the parts and manifest")
    u.add_argument("--to", type=Path, required=True, help="the data folder to write cifar-10-batches-py/ into")
    args = ap.parse_args()
    if args.cmd == "pack":
        for part in pack(args.out, [float(v) for v in args.part_mb.split(",")], args.data_dir):
            print(f"{part}: {part.stat().st_size / 1e6:.1f} MB")
    else:
        print(unpack(args.parts, args.to))


if __name__ == "__main__":
    main()
