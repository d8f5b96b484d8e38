"""The face pass on annotated real photos: how many people it finds a face for, how many faces lie on people.

Measured on ``../shared/realscenes-dev/`` (126 COCO photos; their ``person`` boxes), decoding each photo as
the indexer does (`indexer.images.load` at the working size) and running `indexer.faces.FaceDetector`:

- **person recall (a floor):** the share of person boxes covering >= 5% of the photo that contain the centre
  of a detected face. People seen from behind or too far have no visible face, so read it as a floor;
- **face precision (a proxy):** the share of detected faces whose centre lies inside some person box;
- the windows run per photo and the face pass's time per photo (one thread).

``--levels`` compares tilings (comma-separated tile sides over the shorter side; ``whole`` is the whole
photo), e.g. ``--levels whole --levels whole,0.32``; the default is the shipped `faces.LEVELS`.
``--engine`` picks the engine that runs the model (`faces.ENGINES`; default: OpenVINO where the extra is
installed). ``--compare N`` times the face pass on both engines over the first N photos, interleaved photo by
photo (wall and process CPU time per photo, and the ratio), and checks that they find the same faces.
``--sweep`` also prints the detector's score against the face's share of the input for a scaled-down
scikit-image astronaut (how `faces.MIN_FACE_SHARE` was read).

    python bench/faces.py [--levels whole,0.32 ...] [--engine tflite|openvino] [--compare 40] [--sweep]
                          [--dev ../shared/realscenes-dev]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer import faces, images  # noqa: E402
from indexer.models import DEFAULT_WORKING_SIZE  # noqa: E402

DEV = ROOT.parent / "shared" / "realscenes-dev"
#: Person boxes counted for recall cover at least this share of the photo (issue 12).
MIN_PERSON_SHARE = 0.05
#: The astronaut's face box in scikit-image's 512x512 photo, as a share of its side (measured: 106 px).
ASTRONAUT_FACE_SHARE = 106 / 512


def parse_levels(text: str) -> tuple[float | None, ...]:
    return tuple(None if part == "whole" else float(part) for part in text.split(","))


def inside(point: tuple[float, float], box) -> bool:
    x, y = point
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def centre(face: faces.Face) -> tuple[float, float]:
    return (face.left + face.right) / 2, (face.top + face.bottom) / 2


def measure(detector: faces.FaceDetector, dev: Path, levels) -> dict:
    notes = json.loads((dev / "annotations.json").read_text())["images"]
    people = found_people = detected = on_people = windows = 0
    seconds = 0.0
    for name, note in sorted(notes.items()):
        photo = images.load(dev / "images" / name, min_side=DEFAULT_WORKING_SIZE)
        start = time.perf_counter()
        found = detector.detect(photo.pixels, (photo.width, photo.height), levels)
        seconds += time.perf_counter() - start
        windows += faces.window_count(*photo.pixels.shape[:2], levels)
        boxes = [o["box"] for o in note["objects"] if o["class"] == "person"]
        area = note["width"] * note["height"]
        for box in boxes:
            if (box[2] - box[0]) * (box[3] - box[1]) >= MIN_PERSON_SHARE * area:
                people += 1
                found_people += any(inside(centre(f), box) for f in found)
        detected += len(found)
        on_people += sum(any(inside(centre(f), box) for box in boxes) for f in found)
    return {
        "levels": ",".join("whole" if level is None else f"{level:g}" for level in levels),
        "photos": len(notes), "people": people, "people_with_face": found_people, "faces": detected,
        "faces_on_people": on_people, "person_recall": found_people / max(people, 1),
        "face_precision": on_people / max(detected, 1), "windows_per_photo": windows / len(notes),
        "ms_per_photo": 1000 * seconds / len(notes),
    }


def same_faces(a: list[faces.Face], b: list[faces.Face], pixels: float = 1.0) -> bool:
    return len(a) == len(b) and all(np.allclose(x[:4], y[:4], atol=pixels) for x, y in zip(a, b))


def compare(dev: Path, count: int) -> None:
    """Both engines on the same photos, alternating which runs first, so that the machine's load falls on
    both alike."""
    names = sorted(json.loads((dev / "annotations.json").read_text())["images"])[:count]
    photos = []
    for name in names:
        photo = images.load(dev / "images" / name, min_side=DEFAULT_WORKING_SIZE)
        photos.append((faces.detection_pixels(photo.pixels), (photo.width, photo.height)))
    detectors = {engine: faces.FaceDetector(engine=engine) for engine in faces.ENGINES}
    for detector in detectors.values():
        detector.detect(*photos[0])
    wall = dict.fromkeys(detectors, 0.0)
    cpu = dict.fromkeys(detectors, 0.0)
    differing = 0
    for i, (pixels, size) in enumerate(photos):
        found = {}
        for engine in (faces.ENGINES if i % 2 else faces.ENGINES[::-1]):
            start, start_cpu = time.perf_counter(), time.process_time()
            found[engine] = detectors[engine].detect(pixels, size)
            wall[engine] += time.perf_counter() - start
            cpu[engine] += time.process_time() - start_cpu
        differing += not same_faces(*found.values())
    print(f"face pass on {len(photos)} photos of {dev.name}, engines interleaved, load {os.getloadavg()[0]:.2f}:")
    for engine in detectors:
        print(f"  {engine:9s} {1000 * wall[engine] / len(photos):6.1f} ms per photo, "
              f"{1000 * cpu[engine] / len(photos):6.1f} ms CPU")
    old, new = faces.TFLITE, faces.OPENVINO
    print(f"  {new} / {old}: {wall[new] / wall[old]:.2f}x the time, {cpu[new] / cpu[old]:.2f}x the CPU; "
          f"photos whose faces differ (count, or a box by > 1 px): {differing}")


def sweep(detector: faces.FaceDetector) -> None:
    """The best score on the astronaut scaled so that its face is ``share`` of a 192 px grey input."""
    from skimage import data

    photo = data.astronaut()
    print("face share of the input -> best score at three positions")
    for face_px in (6, 8, 10, 12, 14, 16, 20, 24, 32):  # the photo must fit the input
        side = round(face_px / ASTRONAUT_FACE_SHARE)
        small = images.resize(photo, (side, side))
        scores = []
        for y, x in ((0, 0), (40, 60), (100, 20)):
            canvas = np.full((faces.INPUT_SIZE, faces.INPUT_SIZE, 3), 128, np.uint8)
            y, x = min(y, faces.INPUT_SIZE - side), min(x, faces.INPUT_SIZE - side)
            canvas[y : y + side, x : x + side] = small
            _, _, score = faces.decode(*detector.raw(canvas), detector.anchors)
            scores.append(f"{score.max():.2f}")
        print(f"  {face_px / faces.INPUT_SIZE:.3f} ({face_px:>2} px): {' '.join(scores)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", action="append", type=parse_levels, help="a tiling, e.g. whole,0.32")
    parser.add_argument("--sweep", action="store_true", help="score against face size on the astronaut")
    parser.add_argument("--engine", choices=faces.ENGINES, help="the engine running the model")
    parser.add_argument("--compare", type=int, metavar="N", help="time both engines on the first N photos")
    parser.add_argument("--dev", type=Path, default=DEV, help="the annotated photos (default: ../shared/realscenes-dev)")
    args = parser.parse_args()
    if args.compare:
        compare(args.dev, args.compare)
        return
    detector = faces.FaceDetector(engine=args.engine)
    print(f"engine {detector.engine}, load {os.getloadavg()[0]:.2f}")
    if args.sweep:
        sweep(detector)
    for levels in args.levels or [faces.LEVELS]:
        row = measure(detector, args.dev, levels)
        print(
            f"levels {row['levels']}: person recall {row['person_recall']:.1%} ({row['people_with_face']}/{row['people']} "
            f"person boxes >= {MIN_PERSON_SHARE:.0%} of the photo hold a face), face precision {row['face_precision']:.1%} "
            f"({row['faces_on_people']}/{row['faces']} faces inside a person box), {row['windows_per_photo']:.1f} "
            f"windows and {row['ms_per_photo']:.0f} ms per photo"
        )


if __name__ == "__main__":
    main()
