"""Create data/real_photos: sample photographs that ship with scikit-image and scikit-learn, with captions.

Usage: python scripts/make_real_photos.py [OUTPUT_FOLDER]

Every image comes from a Python package, so nothing is downloaded:
``skimage.data`` (scikit-image 0.26) and
``sklearn.datasets.load_sample_images`` (scikit-learn). Colour photographs
are saved as JPEG (quality 90) and greyscale ones as single-channel PNG, each
scaled down so that its longer side is at most 512 pixels. The captions and
the two label columns (``subject``, ``colour``) were written for this book.
``captions.csv`` and ``SOURCES.md`` (origin and licence of each image) are
written beside the images.

The output folder is written to a temporary sibling first and then renamed
into place, so an interrupted run leaves the previous folder intact. The same
package versions give byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import skimage.data
from PIL import Image
from sklearn.datasets import load_sample_images

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers.folders import replace_folder  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "data" / "real_photos"
MAX_SIDE = 512
JPEG_QUALITY = 90


def _sklearn_image(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        bunch = load_sample_images()
        index = [Path(f).name for f in bunch.filenames].index(name)
        return bunch.images[index]

    return load


@dataclass(frozen=True)
class Photo:
    """One photograph of the set: its loader, caption, subject label and origin."""

    stem: str
    load: Callable[[], np.ndarray]
    caption: str
    subject: str
    source: str


PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", skimage.data.astronaut,
          "an astronaut in an orange suit next to a flag and a model shuttle", "person",
          "skimage.data.astronaut: Eileen Collins, NASA Great Images; public domain"),
    Photo("brick", skimage.data.brick,
          "a brick wall seen at an angle", "surface",
          "skimage.data.brick: CC0Textures (Bricks25); CC0"),
    Photo("camera", skimage.data.camera,
          "a man looking through a camera on a tripod", "person",
          "skimage.data.camera: photograph by Lav Varshney; CC0"),
    Photo("cat", skimage.data.chelsea,
          "a close-up of a tabby cat with green eyes", "animal",
          "skimage.data.chelsea: photograph by Stefan van der Walt; CC0"),
    Photo("china", _sklearn_image("china.jpg"),
          "a tall chinese temple among trees above a lake", "building",
          "sklearn.datasets.load_sample_images china.jpg: danielbuechele on Flickr; CC BY 2.0"),
    Photo("clock", skimage.data.clock,
          "a wall clock blurred by camera motion", "object",
          "skimage.data.clock: photograph by Stefan van der Walt; public domain"),
    Photo("coffee", skimage.data.coffee,
          "a cup of coffee on a red saucer with a spoon", "object",
          "skimage.data.coffee: photograph by Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0"),
    Photo("coins", skimage.data.coins,
          "rows of ancient greek coins on a dark background", "object",
          "skimage.data.coins: Brooklyn Museum Collection; no known copyright restrictions"),
    Photo("flower", _sklearn_image("flower.jpg"),
          "an orange dahlia in front of green leaves", "plant",
          "sklearn.datasets.load_sample_images flower.jpg: vultilion on Flickr; CC BY 2.0"),
    Photo("galaxies", skimage.data.hubble_deep_field,
          "thousands of distant galaxies seen by a space telescope", "space",
          "skimage.data.hubble_deep_field: Hubble eXtreme Deep Field, NASA; public domain"),
    Photo("grass", skimage.data.grass,
          "a black and white close-up of grass", "plant",
          "skimage.data.grass: linolafett on DeviantArt; CC0"),
    Photo("gravel", skimage.data.gravel,
          "a patch of small grey stones", "surface",
          "skimage.data.gravel: CC0Textures (Gravel04); CC0"),
    Photo("handwriting", skimage.data.text,
          "handwritten equations on a sheet of lined paper", "writing",
          "skimage.data.text: Wikipedia, File:Corner.png; public domain"),
    Photo("retina", skimage.data.retina,
          "the back of a human eye with its blood vessels", "medical",
          "skimage.data.retina: Mikael Häggström, Wikimedia Commons; CC0"),
    Photo("rocket", skimage.data.rocket,
          "a rocket on its launch pad at dusk", "vehicle",
          "skimage.data.rocket: SpaceX launch of DSCOVR; public domain"),
    Photo("tissue", skimage.data.immunohistochemistry,
          "a microscope image of stained tissue in brown and blue", "medical",
          "skimage.data.immunohistochemistry: Center for Microscopy And Molecular Imaging; "
          "no known copyright restrictions"),
)


def scaled_image(pixels: np.ndarray) -> Image.Image:
    """Return ``pixels`` as a Pillow image whose longer side is at most MAX_SIDE pixels."""
    image = Image.fromarray(pixels)
    scale = MAX_SIDE / max(image.size)
    if scale < 1:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def write_photo(photo: Photo, folder: Path) -> tuple[str, str]:
    """Save one photograph into ``folder``; return its file name and colour label."""
    image = scaled_image(photo.load())
    if image.mode == "L":
        name = f"{photo.stem}.png"
        image.save(folder / name, optimize=True)
        return name, "greyscale"
    name = f"{photo.stem}.jpg"
    image.convert("RGB").save(folder / name, quality=JPEG_QUALITY, optimize=True)
    return name, "colour"


def write_folder(folder: Path) -> None:
    """Write the images, captions.csv and SOURCES.md into the empty folder ``folder``."""
    rows, sources = [], []
    for photo in PHOTOS:
        name, colour = write_photo(photo, folder)
        rows.append((name, photo.caption, photo.subject, colour))
        sources.append(f"| `{name}` | {photo.source} |")
    with open(folder / "captions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("file", "caption", "subject", "colour"))
        writer.writerows(rows)
    (folder / "SOURCES.md").write_text(
        "# Sources of the real photographs\n\n"
        "Created by `scripts/make_real_photos.py` from the sample images that scikit-image "
        "and scikit-learn ship. The captions and labels were written for this book.\n\n"
        "| file | origin and licence |\n|---|---|\n" + "\n".join(sources) + "\n",
        encoding="utf-8",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT, help="folder to (re)create")
    args = parser.parse_args()
    replace_folder(args.output, write_folder)
    total = sum(p.stat().st_size for p in args.output.iterdir())
    print(f"wrote {len(PHOTOS)} photographs to {args.output} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
