"""Read a folder of images with captions, in COCO captions JSON or CSV form.

:func:`load_image_folder` takes the path of a folder or of a captions file:

* a folder with its images and a ``captions*.csv`` file: a header line with
  the columns ``file`` and ``caption``, then one row per image. ``file`` is
  the image path relative to the folder. Any further column is a label, for
  example ``file,caption,subject``.
* a folder with its images and a COCO captions file ``captions*.json``
  (``images`` with ``id`` and ``file_name``, ``annotations`` with
  ``image_id`` and ``caption``). The JSON may also sit beside the folder as
  ``captions_<folder name>.json``, in the parent folder or in the parent's
  ``annotations/`` folder, which is COCO's own layout
  (``coco/val2017/`` and ``coco/annotations/captions_val2017.json``).
* the path of a captions file itself (``.csv`` or ``.json``). Images are
  looked up relative to the file's folder. For
  ``annotations/captions_<split>.json``, they are looked up in the sibling
  folder ``<split>/`` when it exists.

Rules the loader applies:

* Each image gets one caption: the first one in file order. COCO lists about
  five captions per image, so the others are ignored, and later CSV rows
  that repeat a file are ignored in the same way.
* Images that the captions file lists but that are missing on disk are left
  out, with one warning that gives their number and names the first few.
  When none of the listed images exist, loading fails.
* Images that cannot be decoded (corrupt, truncated, not an image) are left
  out with a warning naming each one, and loading goes on.
  :attr:`FolderImages.skipped` records every image left out, with the reason.
* Every image is converted to RGB uint8 at its own size. Greyscale, palette
  and CMYK images are converted by Pillow. Transparent pixels are composited
  onto white, 16-bit images are scaled to 8 bits, and the EXIF orientation is
  applied. The model's image processor resizes the images later.

Malformed captions files raise :class:`CaptionFileError` with the line
number, or the index of the JSON entry when the JSON syntax is valid.
"""

from __future__ import annotations

import csv
import io
import json
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from .paths import REPO_ROOT

CAPTION_FILE_PATTERNS: tuple[str, ...] = ("captions*.csv", "captions*.json")
# How many file names a warning or an error lists before it only counts.
LISTED_FILES = 5
# Loads of at least this many images show a progress bar.
PROGRESS_BAR_MIN_IMAGES = 100
# Exceptions that Pillow raises for files it cannot decode.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)


class DatasetError(ValueError):
    """Raised when a data set cannot be found or read."""


class CaptionFileError(DatasetError):
    """Raised when a captions file is malformed; the message gives the line or the entry."""


class DatasetWarning(UserWarning):
    """Warned when images are left out or fewer images exist than were requested."""


@dataclass
class CaptionEntry:
    """One image listed in a captions file.

    Attributes:
        file: the image path relative to the image folder, as the captions file writes it.
        caption: its first caption.
        labels: label column -> value (CSV only; empty string where blank).
        location: where the entry is in the captions file, for messages
            ("line 4" or "images[3]").
    """

    file: str
    caption: str
    labels: dict[str, str]
    location: str


@dataclass
class CaptionTable:
    """The parsed captions file of an image folder.

    Attributes:
        path: the captions file.
        image_root: the folder that the ``file`` entries are relative to.
        entries: one entry per image, in file order.
        label_columns: names of the CSV label columns (empty for COCO).
    """

    path: Path
    image_root: Path
    entries: list[CaptionEntry]
    label_columns: tuple[str, ...] = ()


@dataclass
class FolderImages:
    """Images and captions read from a folder.

    Attributes:
        images: RGB uint8 arrays of shape (height, width, 3), one per image.
        captions: one caption per image.
        files: image paths relative to the image folder.
        labels: label column -> integer label per image (-1 where blank).
        label_names: label column -> the value each integer stands for, sorted.
        skipped: (file, reason) for each image left out.
        captions_file: the captions file that was read.
        n_available: images listed with a caption that exist on disk.
    """

    images: list[np.ndarray]
    captions: list[str]
    files: list[str]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    label_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    captions_file: Path | None = None
    n_available: int = 0


def resolve_path(spec: str | Path) -> Path | None:
    """Return the existing file or folder that ``spec`` names, or None.

    A relative path is looked up in the current folder first, then in the
    repository root, so ``data/real_photos`` also works from ``notebooks/``.
    """
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if not path.is_absolute() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _listed(names: list[str]) -> str:
    quoted = ", ".join(repr(name) for name in names[:LISTED_FILES])
    return quoted + (f" and {len(names) - LISTED_FILES} more" if len(names) > LISTED_FILES else "")


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise CaptionFileError(
            f"captions file {str(path)!r} is not UTF-8 text: line {line} has the invalid byte "
            f"{raw[error.start:error.start + 1]!r}; save it as UTF-8"
        ) from None


def read_captions_csv(path: Path) -> tuple[list[CaptionEntry], tuple[str, ...]]:
    """Parse a CSV captions file with the columns ``file``, ``caption`` and optional labels.

    Returns:
        The entries in file order (blank lines ignored) and the label column names.

    Raises:
        CaptionFileError: naming the line of invalid CSV, a row with the wrong
            number of fields, an empty file name or caption, or a missing or
            repeated column.
    """
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    while True:
        start_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise CaptionFileError(
                f"captions file {str(path)!r} is not valid CSV: line {start_line}: {error}; "
                "quote fields that contain commas, quotes or line breaks"
            ) from None
        if any(cell.strip() for cell in row):
            rows.append((start_line, [cell.strip() for cell in row]))

    if not rows:
        raise CaptionFileError(f"captions file {str(path)!r} is empty; expected a header line 'file,caption'")
    header_line, header = rows[0]
    columns = [name.lower() for name in header]
    for required in ("file", "caption"):
        if required not in columns:
            raise CaptionFileError(
                f"captions file {str(path)!r}: line {header_line}: the header {','.join(header)!r} has no "
                f"'{required}' column; the first line must name the columns, e.g. 'file,caption'"
            )
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise CaptionFileError(f"captions file {str(path)!r}: line {header_line}: repeated column {repeated[0]!r}")

    file_column, caption_column = columns.index("file"), columns.index("caption")
    label_columns = tuple(name for name in header if name.lower() not in ("file", "caption"))
    label_indices = [columns.index(name.lower()) for name in label_columns]
    entries = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise CaptionFileError(
                f"captions file {str(path)!r}: line {line}: expected {len(header)} fields "
                f"({','.join(header)}), found {len(row)}; quote fields that contain commas"
            )
        if not row[file_column]:
            raise CaptionFileError(f"captions file {str(path)!r}: line {line}: the 'file' field is empty")
        if not row[caption_column]:
            raise CaptionFileError(
                f"captions file {str(path)!r}: line {line}: the caption of {row[file_column]!r} is empty"
            )
        labels = {name: row[index] for name, index in zip(label_columns, label_indices)}
        entries.append(CaptionEntry(row[file_column], row[caption_column], labels, f"line {line}"))
    if not entries:
        raise CaptionFileError(f"captions file {str(path)!r} has a header but no rows")
    return entries, label_columns


def _coco_field(path: Path, entry: object, location: str, name: str, kind: type | tuple[type, ...]):
    if not isinstance(entry, dict) or name not in entry:
        raise CaptionFileError(f"COCO captions file {str(path)!r}: {location} has no {name!r}")
    value = entry[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise CaptionFileError(f"COCO captions file {str(path)!r}: {location} has {name}={value!r} of the wrong type")
    return value


def read_coco_captions(path: Path) -> list[CaptionEntry]:
    """Parse a COCO captions JSON file into one entry per image, with the image's first caption.

    Images keep the order of the ``images`` list. Images without any caption
    are left out with a warning.

    Raises:
        CaptionFileError: for invalid JSON (with line and column), a missing
            list or field (with the entry's index), a repeated image id, or a
            caption whose ``image_id`` is not among the images.
    """
    try:
        document = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise CaptionFileError(
            f"captions file {str(path)!r} is not valid JSON: line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    if not (
        isinstance(document, dict)
        and isinstance(document.get("images"), list)
        and isinstance(document.get("annotations"), list)
    ):
        raise CaptionFileError(
            f"captions file {str(path)!r} is not in COCO captions format: it needs the lists 'images' "
            "(entries with id and file_name) and 'annotations' (entries with image_id and caption)"
        )

    files: dict[object, tuple[str, str]] = {}
    for index, image in enumerate(document["images"]):
        location = f"images[{index}]"
        image_id = _coco_field(path, image, location, "id", (int, str))
        file_name = _coco_field(path, image, location, "file_name", str)
        if image_id in files:
            raise CaptionFileError(f"COCO captions file {str(path)!r}: {location} repeats the image id {image_id!r}")
        files[image_id] = (file_name, location)

    first_caption: dict[object, str] = {}
    for index, annotation in enumerate(document["annotations"]):
        location = f"annotations[{index}]"
        image_id = _coco_field(path, annotation, location, "image_id", (int, str))
        caption = _coco_field(path, annotation, location, "caption", str).strip()
        if image_id not in files:
            raise CaptionFileError(
                f"COCO captions file {str(path)!r}: {location} has image_id {image_id!r}, which no entry of 'images' has"
            )
        if caption and image_id not in first_caption:
            first_caption[image_id] = caption

    uncaptioned = [name for image_id, (name, _) in files.items() if image_id not in first_caption]
    if uncaptioned:
        warnings.warn(
            f"{_count(len(uncaptioned), 'image')} in {str(path)!r} without a caption left out: {_listed(uncaptioned)}",
            DatasetWarning,
            stacklevel=3,
        )
    return [
        CaptionEntry(name, first_caption[image_id], {}, location)
        for image_id, (name, location) in files.items()
        if image_id in first_caption
    ]


def _coco_image_root(json_path: Path) -> Path:
    split = json_path.stem.removeprefix("captions_")
    sibling = json_path.parent.parent / split
    if json_path.parent.name == "annotations" and split != json_path.stem and sibling.is_dir():
        return sibling
    return json_path.parent


def _caption_files_inside(folder: Path) -> list[Path]:
    found = {path for pattern in CAPTION_FILE_PATTERNS for path in folder.glob(pattern) if path.is_file()}
    return sorted(found)


def find_captions_file(folder: Path) -> tuple[Path, Path]:
    """Return the captions file of an image folder and the folder its image paths are relative to.

    Raises:
        DatasetError: when the folder is empty, has no captions file, or has
            several and it is unclear which one to read.
    """
    inside = _caption_files_inside(folder)
    if len(inside) == 1:
        return inside[0], folder
    if len(inside) > 1:
        named = [path for path in inside if path.stem.endswith(f"_{folder.name}")]
        if len(named) == 1:
            return named[0], folder
        raise DatasetError(
            f"dataset folder {str(folder)!r} has several captions files ({', '.join(p.name for p in inside)}); "
            "pass the path of the one to read as the dataset"
        )

    beside = [
        candidate
        for candidate in (folder.parent / f"captions_{folder.name}.json", folder.parent / "annotations" / f"captions_{folder.name}.json")
        if candidate.is_file()
    ]
    if beside:
        return beside[0], folder

    if not any(not path.name.startswith(".") for path in folder.iterdir()):
        raise DatasetError(
            f"dataset folder {str(folder)!r} is empty; put the images in it together with captions.csv "
            "(columns file,caption) or a COCO captions*.json file"
        )
    raise DatasetError(
        f"dataset folder {str(folder)!r} has no captions file: expected captions.csv (columns file,caption) or "
        f"captions*.json inside it, or captions_{folder.name}.json beside it or in ../annotations/"
    )


def read_caption_table(path: Path) -> CaptionTable:
    """Find and parse the captions of a folder, or parse the captions file ``path`` itself.

    Raises:
        DatasetError: when no captions file is found or its type is unknown.
        CaptionFileError: when the captions file is malformed.
    """
    if path.is_dir():
        captions_file, image_root = find_captions_file(path)
    else:
        captions_file = path
        image_root = _coco_image_root(path) if path.suffix.lower() == ".json" else path.parent

    suffix = captions_file.suffix.lower()
    if suffix == ".csv":
        entries, label_columns = read_captions_csv(captions_file)
        return CaptionTable(captions_file, image_root, entries, label_columns)
    if suffix == ".json":
        return CaptionTable(captions_file, image_root, read_coco_captions(captions_file))
    raise DatasetError(
        f"dataset file {str(path)!r} is neither a .csv nor a .json captions file; pass an image folder, "
        "its captions.csv or its COCO captions JSON"
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a Pillow image of any mode to RGB.

    Transparent pixels are composited onto white. 16-bit and 32-bit integer
    greyscale is scaled to 8 bits by its bit depth, and float greyscale in
    [0, 1] is scaled by 255.
    """
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or (image.mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0
        elif image.mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def read_rgb(path: Path) -> np.ndarray:
    """Decode the image at ``path`` into an RGB uint8 array of shape (height, width, 3).

    Raises:
        OSError, SyntaxError, ValueError and the other decoding errors of
        Pillow when the file is not a complete, readable image.
    """
    with Image.open(path) as image:
        image.load()
        upright = ImageOps.exif_transpose(image)
        return np.array(to_rgb(upright))


def _present_entries(table: CaptionTable) -> tuple[list[CaptionEntry], list[tuple[str, str]]]:
    unique: dict[str, CaptionEntry] = {}
    for entry in table.entries:
        unique.setdefault(entry.file, entry)
    present, missing = [], []
    for entry in unique.values():
        (present if (table.image_root / entry.file).is_file() else missing).append(entry)
    if not present:
        raise DatasetError(
            f"none of the {_count(len(unique), 'image')} listed in {str(table.path)!r} exist under {str(table.image_root)!r} "
            f"(first missing: {_listed([e.file for e in missing])}); check that the captions file belongs to this folder"
        )
    if missing:
        warnings.warn(
            f"{len(missing)} of the {_count(len(unique), 'image')} listed in {str(table.path)!r} "
            f"{'is' if len(missing) == 1 else 'are'} missing under {str(table.image_root)!r} and left out: "
            f"{_listed([e.file for e in missing])}",
            DatasetWarning,
            stacklevel=3,
        )
    return present, [(entry.file, "missing") for entry in missing]


def _warn_unreadable(unreadable: list[tuple[str, str]], image_root: Path) -> None:
    for name, reason in unreadable[:LISTED_FILES]:
        warnings.warn(
            f"skipped unreadable image {name!r} in {str(image_root)!r}: {reason}", DatasetWarning, stacklevel=4
        )
    if len(unreadable) > LISTED_FILES:
        warnings.warn(
            f"skipped {_count(len(unreadable) - LISTED_FILES, 'more unreadable image')} in {str(image_root)!r}",
            DatasetWarning,
            stacklevel=4,
        )


def _label_arrays(table: CaptionTable, chosen: list[CaptionEntry]) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, ...]]]:
    # Label values come from every row, so a value keeps its integer whatever subset is drawn.
    labels, label_names = {}, {}
    for column in table.label_columns:
        names = tuple(sorted({entry.labels[column] for entry in table.entries if entry.labels[column]}))
        index = {name: i for i, name in enumerate(names)}
        labels[column] = np.array([index.get(entry.labels[column], -1) for entry in chosen], dtype=int)
        label_names[column] = names
    return labels, label_names


def load_image_folder(spec: str | Path, n: int, seed: int = 0) -> FolderImages:
    """Load up to ``n`` images with their first captions from a folder or captions file.

    When the folder has more than ``n`` usable images, ``n`` are drawn at
    random with ``seed`` and returned in captions-file order. Otherwise all
    are returned, in that order, and a warning names both numbers when fewer
    than ``n`` exist. Unreadable images are replaced by further draws while
    any remain.

    Args:
        spec: an image folder or a captions file (see the module docstring).
        n: number of images wanted, at least 1.
        seed: seed of the draw.

    Raises:
        ValueError: for ``n`` below 1.
        DatasetError: when the path does not exist, contains no captions file,
            lists no image that exists, or no listed image can be decoded.
        CaptionFileError: when the captions file is malformed.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    path = resolve_path(spec)
    if path is None:
        raise DatasetError(f"dataset path {str(spec)!r} does not exist")
    table = read_caption_table(path)
    present, skipped = _present_entries(table)

    if n > len(present):
        warnings.warn(
            f"dataset {str(spec)!r} has {_count(len(present), 'image')} with captions, fewer than the {n} requested; "
            f"using all {len(present)}",
            DatasetWarning,
            stacklevel=2,
        )
    order = range(len(present)) if n >= len(present) else np.random.default_rng(seed).permutation(len(present))
    target = min(n, len(present))

    loaded: dict[int, np.ndarray] = {}
    unreadable: list[tuple[str, str]] = []
    with tqdm(total=target, desc="reading images", disable=target < PROGRESS_BAR_MIN_IMAGES, leave=False) as bar:
        for position in order:
            if len(loaded) == target:
                break
            entry = present[int(position)]
            try:
                loaded[int(position)] = read_rgb(table.image_root / entry.file)
            except _DECODE_ERRORS as error:
                unreadable.append((entry.file, f"{type(error).__name__}: {error}"))
                continue
            bar.update()
    _warn_unreadable(unreadable, table.image_root)
    if not loaded:
        raise DatasetError(
            f"none of the {_count(len(unreadable), 'image')} listed in {str(table.path)!r} could be decoded "
            f"(first: {unreadable[0][0]!r}: {unreadable[0][1]}); check that they are image files"
        )

    chosen = [present[position] for position in sorted(loaded)]
    labels, label_names = _label_arrays(table, chosen)
    return FolderImages(
        images=[loaded[position] for position in sorted(loaded)],
        captions=[entry.caption for entry in chosen],
        files=[entry.file for entry in chosen],
        labels=labels,
        label_names=label_names,
        skipped=skipped + unreadable,
        captions_file=table.path,
        n_available=len(present),
    )
