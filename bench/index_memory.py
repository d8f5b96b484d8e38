"""Peak memory while indexing full-size photos, against the model alone.

Each figure is the peak resident set (``ru_maxrss``) of a fresh process:

- **model only**: load the model, run ``class_map`` on one batch of the working shape;
- **imgidx index**: ``imgidx index FOLDER --db NEW.db -q`` over the folder of 4000x3000 JPEGs of
  bench/photo_folder.py, as a user runs it.

The difference is what indexing adds: files read ahead, decoded and resized images waiting for a batch,
logits waiting for the writer, SQLite.

``--megapixels 200`` instead indexes one JPEG of that size (4:3, a phone photo's) and, for comparison, the
same picture at 12 MP: JPEGs are decoded reduced (draft mode), so the large one costs little more.

    python bench/index_memory.py [--model efficientnet-lite0 | vgg16-random] [--batches 8,16] [--count 48]
    python bench/index_memory.py --megapixels 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from index_throughput import model_loader  # noqa: E402
from photo_folder import make_folder  # noqa: E402

from indexer import images  # noqa: E402
from indexer.models import DEFAULT_WORKING_SIZE  # noqa: E402

MODEL_ONLY = """
import numpy as np
from indexer.models import load_model
model = load_model({name!r}, {weights!r})
model.class_map(np.zeros(({batch}, {height}, {width}, 3), np.uint8))
"""


def peak_mb(argv: list[str]) -> float:
    """Peak resident memory of a child process running ``argv``, in MB."""
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:4]} failed: {child.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024


def one_photo_peak(megapixels: float, name: str, tmp: Path) -> float:
    """Peak memory of `imgidx index` over one 4:3 JPEG of ``megapixels`` (astronaut, scaled up)."""
    from PIL import Image
    from skimage import data

    width = round((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = round(width * 3 / 4)
    folder = tmp / f"{megapixels:g}mp"
    folder.mkdir()
    Image.fromarray(data.astronaut()).resize((width, height)).save(folder / "photo.jpg", quality=90)
    argv = [sys.executable, "-m", "indexer", "index", str(folder), "--db", str(tmp / f"{megapixels:g}.db"),
            "--model", name, "-q"]
    return peak_mb(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--batches", default="8,16")
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--megapixels", type=float, default=None, help="Index one JPEG of this size instead.")
    args = parser.parse_args()
    if args.megapixels:
        with tempfile.TemporaryDirectory() as tmp:
            for megapixels in dict.fromkeys((12, args.megapixels)):
                peak = one_photo_peak(megapixels, args.model, Path(tmp))
                print(f"{args.model}, one {megapixels:g} MP JPEG: imgidx index peak {peak:.0f} MB", flush=True)
        return
    folder = make_folder(args.count)
    name, weights = args.model, None
    if args.model == "vgg16-random":
        model_loader(args.model, None, "auto")  # writes the checkpoint once
        name, weights = "vgg16", str(Path(__file__).resolve().parent / "out" / "vgg16-random" / "vgg_16.ckpt")
    height, width = images.working_shape(3000, 4000, DEFAULT_WORKING_SIZE, 32)
    print(f"{name}, {args.count} JPEGs of 4000x3000, working shape {height}x{width}")
    for batch in (int(b) for b in args.batches.split(",")):
        code = MODEL_ONLY.format(name=name, weights=weights, batch=batch, height=height, width=width)
        model_only = peak_mb([sys.executable, "-c", code])
        with tempfile.TemporaryDirectory() as tmp:
            argv = [sys.executable, "-m", "indexer", "index", str(folder), "--db", str(Path(tmp) / "m.db"),
                    "--model", name, "--batch", str(batch), "-q"]
            indexing = peak_mb(argv + (["--weights", weights] if weights else []))
        print(f"batch {batch:>3}: model only {model_only:7.0f} MB, imgidx index {indexing:7.0f} MB "
              f"(+{indexing - model_only:.0f} MB)", flush=True)


if __name__ == "__main__":
    main()
