"""What a user hands the demo (an image file, a question or none) checked before the model sees it.

Each refusal is an InputError whose message is written for the person at the page or the command line:
what was wrong and what to do instead. PIL only reads the header before the size checks, so an oversized
or decompression-bomb image is refused without being decoded. The pixels are then read as training reads
them (datasets.checks.read_rgb: EXIF rotation, 16-bit scaling, alpha on white, truncated files refused).
"""

import io

from PIL import Image, UnidentifiedImageError

from lavis_gated.datasets.checks import read_rgb

MAX_IMAGE_MB = 20
MAX_IMAGE_SIDE = 8000


class InputError(ValueError):
    """Input the demo cannot use; str(error) is the message to show."""


def read_image(data, name="the file"):
    """bytes of an image file -> RGB PIL image; InputError for no data, a non-image or an oversized one."""
    if data is None:
        raise InputError("No image: upload one or pick a demo test image.")
    if not data:
        raise InputError(f"{name} is empty (0 bytes): use an image file.")
    if len(data) > MAX_IMAGE_MB * 1024 * 1024:
        raise InputError(
            f"{name} is {len(data) / 1024 / 1024:.1f} MB; the limit is {MAX_IMAGE_MB} MB. "
            "Use a smaller image."
        )
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise InputError(
            f"{name} has more pixels than PIL will open safely; the limit is {MAX_IMAGE_SIDE} pixels a side."
        ) from None
    except (UnidentifiedImageError, OSError):
        raise InputError(
            f"{name} is not an image PIL can read (PNG, JPEG, WebP, ...): use an image file."
        ) from None
    width, height = image.size
    if max(width, height) > MAX_IMAGE_SIDE:
        raise InputError(
            f"{name} is {width} x {height} pixels; the limit is {MAX_IMAGE_SIDE} pixels a side. "
            "Use a smaller image."
        )
    try:
        return read_rgb(data)
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{name} could not be decoded as an image ({err}).") from None


def read_image_file(path):
    """The RGB image at path; InputError naming the path when it is missing or not a usable image."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"No image file at {path}.") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not an image file.") from None
    return read_image(data, name=str(path))


def check_question(question):
    """The question, stripped; None when there is none (blank): the model then captions the image."""
    question = (question or "").strip()
    return question or None
