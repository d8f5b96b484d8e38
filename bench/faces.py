"""The face pass on annotated real photos: how many people it finds a face for, how many faces lie on people.

Measured on ``../shared/realscenes-dev/`` (126 COCO photos; their ``person`` boxes), decoding each photo as
the indexer does (`indexer.images.load` at the working size) and running `indexer.faces.FaceDetector`:

- **person recall (a floor):** the share of person boxes covering >= 5% of the photo that contain the centre
  of a detected face. People seen from behind or too far have no visible face, so read it as a floor;
- **face precision (a proxy):** the share of detected faces whose centre lies inside some person box;
- the windows run per photo and the face pass's time per photo (one thread).

``--levels`` compares tilings (comma-separated tile sides over the shorter side; ``whole`` is the whole
photo), e.g. ``--levels whole --levels whole,0.32``; the default is the shipped `faces.LEVELS`.
``--guided`` runs each tiling also as the indexer does with objects on (`indexer.detect.find`): the object
detector first, then the face search over the whole photo and only the tiles over its person boxes;
``--guide-min`` (repeatable) the person boxes' least confidence (`detect.GUIDE_MIN_CONFIDENCE`),
``--alone-min`` (repeatable) the least confidence of a face that is no person's
(`detect.ALONE_MIN_CONFIDENCE`), ``--face-in-person`` (repeatable) the smallest face of a person box, as a
share of its height (`faces.FACE_IN_PERSON`). Each row also counts the faces found on
scikit-image photos that hold none (`FACELESS`: a star field, a coffee cup, a cat, a rocket...), at the
indexer's decode.
``--engine`` picks the engine that runs the model (`faces.ENGINES`; default: OpenVINO where the extra is
installed). ``--compare N`` times the face pass on both engines over the first N photos, interleaved photo by
photo (wall and process CPU time per photo, and the ratio), and checks that they find the same faces.
``--sweep`` also prints the detector's score against the face's share of the input for a scaled-down
scikit-image astronaut (how `faces.MIN_FACE_SHARE` was read).

    python bench/faces.py [--levels whole,0.32 ...] [--engine tflite|openvino] [--compare 40] [--sweep]
                          [--guided [--guide-min 0.2 ...] [--alone-min 0.75 ...] [--face-in-person 0.065 ...]]
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

from indexer import detect, faces, images  # noqa: E402
from indexer.boxes import Box  # noqa: E402
from indexer.models import DEFAULT_WORKING_SIZE  # noqa: E402

DEV = ROOT.parent / "shared" / "realscenes-dev"
#: Person boxes counted for recall cover at least this share of the photo (issue 12).
MIN_PERSON_SHARE = 0.05
#: The astronaut's face box in scikit-image's 512x512 photo, as a share of its side (measured: 106 px).
ASTRONAUT_FACE_SHARE = 106 / 512
#: scikit-image photos without a human face (issue 20: the star field showed six faces, the coffee cup one).
FACELESS = ("hubble_deep_field", "coffee", "chelsea", "rocket", "coins", "immunohistochemistry", "retina", "clock",
            "brick", "grass", "gravel", "moon")


def parse_levels(text: str) -> tuple[float | None, ...]:
    return tuple(None if part == "whole" else float(part) for part in text.split(","))


def inside(point: tuple[float, float], box) -> bool:
    x, y = point
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def centre(face: Box) -> tuple[float, float]:
    return (face.left + face.right) / 2, (face.top + face.bottom) / 2


class Search:
    """One way of searching a photo for faces: a tiling, and, guided, the object detector's people first."""

    def __init__(self, detector: faces.FaceDetector, levels, objects=None):
        self.detector, self.levels, self.objects = detector, levels, objects
        self.windows = self.seconds = self.object_seconds = 0.0

    @property
    def name(self) -> str:
        tiling = ",".join("whole" if level is None else f"{level:g}" for level in self.levels)
        if self.objects is None:
            return tiling
        return (f"{tiling} over people >= {detect.GUIDE_MIN_CONFIDENCE:g} (a face >= {faces.FACE_IN_PERSON:g} of "
                f"its person; faces of no person >= {detect.ALONE_MIN_CONFIDENCE:g})")

    def __call__(self, pixels: np.ndarray, size: tuple[int, int]) -> list[Box]:
        """The faces of one photo as `detect.find` hands them over (`faces.detection_pixels`)."""
        pixels = faces.detection_pixels(pixels)
        people = None  # in photo pixels, as the detectors give and take them
        if self.objects is not None:
            start = time.perf_counter()
            people = detect.people(self.objects.detect([pixels], [size])[0])
            self.object_seconds += time.perf_counter() - start
        start = time.perf_counter()
        found = detect.guided_faces(self.detector, pixels, size, people, self.levels)
        self.seconds += time.perf_counter() - start
        sx, sy = pixels.shape[1] / size[0], pixels.shape[0] / size[1]
        scaled = None if people is None else [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in people]
        self.windows += faces.window_count(*pixels.shape[:2], self.levels, scaled)
        return found


def measure(search: Search, dev: Path, min_person: float = MIN_PERSON_SHARE) -> dict:
    notes = json.loads((dev / "annotations.json").read_text())["images"]
    people = found_people = detected = on_people = 0
    for name, note in sorted(notes.items()):
        photo = images.load(dev / "images" / name, min_side=DEFAULT_WORKING_SIZE)
        found = search(photo.pixels, (photo.width, photo.height))
        boxes = [o["box"] for o in note["objects"] if o["class"] == "person"]
        area = note["width"] * note["height"]
        for box in boxes:
            if (box[2] - box[0]) * (box[3] - box[1]) >= min_person * area:
                people += 1
                found_people += any(inside(centre(f), box) for f in found)
        detected += len(found)
        on_people += sum(any(inside(centre(f), box) for box in boxes) for f in found)
    return {
        "levels": search.name,
        "photos": len(notes), "people": people, "people_with_face": found_people, "faces": detected,
        "faces_on_people": on_people, "person_recall": found_people / max(people, 1),
        "face_precision": on_people / max(detected, 1), "windows_per_photo": search.windows / len(notes),
        "ms_per_photo": 1000 * search.seconds / len(notes), "object_ms_per_photo": 1000 * search.object_seconds / len(notes),
    }


def faceless(search: Search) -> dict[str, list[float]]:
    """The confidences of the faces found on each of `FACELESS`, decoded as the indexer decodes them."""
    from skimage import data

    found = {}
    for name in FACELESS:
        pixels = getattr(data, name)()
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        pixels = np.ascontiguousarray(pixels[..., :3]).astype(np.uint8)
        found[name] = [round(f.confidence, 2) for f in search(pixels, (pixels.shape[1], pixels.shape[0]))]
    return found


def same_faces(a: list[Box], b: list[Box], pixels: float = 1.0) -> bool:
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
    parser.add_argument("--guided", action="store_true", help="also each tiling over the object detector's people")
    parser.add_argument("--min-person", type=float, default=MIN_PERSON_SHARE,
                        help=f"least share of the photo a person box covers to count (default {MIN_PERSON_SHARE})")
    parser.add_argument("--guide-min", action="append", type=float,
                        help="least confidence of a guiding person box (repeatable; default detect's)")
    parser.add_argument("--face-in-person", action="append", type=float,
                        help="smallest face as a share of its person box's height (repeatable; default faces')")
    parser.add_argument("--alone-min", action="append", type=float,
                        help="least confidence of a face on no person (repeatable; default detect's)")
    parser.add_argument("--no-plain", action="store_true", help="with --guided, leave out the unguided rows")
    args = parser.parse_args()
    if args.compare:
        compare(args.dev, args.compare)
        return
    detector = faces.FaceDetector(engine=args.engine)
    objects = None
    if args.guided:
        from indexer import objects as object_detection

        objects = object_detection.load_detector()
        print(f"object detector: {objects.runtime} {objects.precision}")
    print(f"engine {detector.engine}, load {os.getloadavg()[0]:.2f}")
    if args.sweep:
        sweep(detector)
    searches = []
    for levels in args.levels or [faces.LEVELS]:
        if not (args.guided and args.no_plain):
            searches.append(lambda levels=levels: Search(detector, levels))
        if args.guided:
            for least in args.guide_min or [detect.GUIDE_MIN_CONFIDENCE]:
                for alone in args.alone_min or [detect.ALONE_MIN_CONFIDENCE]:
                    for share in args.face_in_person or [faces.FACE_IN_PERSON]:
                        def guided(levels=levels, least=least, alone=alone, share=share):
                            detect.GUIDE_MIN_CONFIDENCE, detect.ALONE_MIN_CONFIDENCE = least, alone
                            faces.FACE_IN_PERSON = share
                            return Search(detector, levels, objects)
                        searches.append(guided)
    for make in searches:
        search = make()
        row = measure(search, args.dev, args.min_person)
        false = faceless(search)
        objects_ms = f" (+ {row['object_ms_per_photo']:.0f} ms of objects)" if search.objects else ""
        print(
            f"levels {row['levels']}: person recall {row['person_recall']:.1%} ({row['people_with_face']}/{row['people']} "
            f"person boxes >= {args.min_person:.1%} of the photo hold a face), face precision {row['face_precision']:.1%} "
            f"({row['faces_on_people']}/{row['faces']} faces inside a person box), {row['windows_per_photo']:.1f} "
            f"windows and {row['ms_per_photo']:.0f} ms per photo{objects_ms}; faces on faceless photos: "
            + ", ".join(f"{name} {scores}" for name, scores in false.items() if scores) + f" ({sum(map(len, false.values()))})",
            flush=True,
        )


if __name__ == "__main__":
    main()
