"""Images read as they are, by the one reader (datasets.checks.read_rgb) that the datasets, predict and
the demo page share: 16-bit files scaled rather than clipped to white, EXIF rotation applied, alpha on white,
and truncated files refused whatever LAVIS set globally (it turns PIL's LOAD_TRUNCATED_IMAGES on)."""

import io
import os

import numpy as np
import pytest
from PIL import Image, ImageFile

import lavis_gated  # noqa: F401  (imports LAVIS, which sets LOAD_TRUNCATED_IMAGES)
from lavis_gated.app import predict
from lavis_gated.app.inputs import InputError, read_image, read_image_file
from lavis_gated.datasets.artquest_dataset import ArtQuestDataset
from lavis_gated.datasets.checks import read_rgb

RED, BLUE = (220, 20, 30), (20, 40, 210)


def dataset_of(path):
    """A one-row dataset whose processors hand the PIL image and the question through unchanged."""
    row = {
        "question_id": "val-0",
        "image": os.path.basename(path),
        "image_path": str(path),
        "question": "What style is this painting?",
        "answer": "Cubism",
        "question_type": "style",
        "style": "cubism",
    }
    return ArtQuestDataset(lambda image: image, lambda text: text, os.path.dirname(path), [row])


def sixteen_bit_png(path):
    """A 16-bit grayscale gradient (PIL mode I;16): 0, 16384, 32768, 49152, 65535 across."""
    values = np.array([[0, 16384, 32768, 49152, 65535]] * 4, dtype=np.uint16)
    Image.fromarray(values).save(path)
    return path


def sideways_jpeg(path):
    """A 40 x 20 JPEG stored red-left/blue-right with EXIF orientation 6 (view it rotated 90 degrees
    clockwise): upright it is 20 x 40, red on top."""
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif, quality=95)
    return path


def truncated_jpeg(path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    return path


def assert_close(pixel, colour, tolerance=12):
    assert all(abs(a - b) <= tolerance for a, b in zip(pixel, colour)), (pixel, colour)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    path = sixteen_bit_png(tmp_path / "scan16.png")
    assert Image.open(path).mode == "I;16"
    expected = [0, 64, 128, 191, 255]  # value / 65535 * 255, rounded
    # the dataset (training, evaluation) and predict / the demo page read the same pixels
    for image in (dataset_of(path)[0]["image"], read_image_file(path), read_rgb(path)):
        assert image.mode == "RGB"
        assert [image.getpixel((x, 0))[0] for x in range(5)] == expected


def test_thirty_two_bit_integer_and_float_images_are_scaled(tmp_path):
    integer = Image.fromarray(np.array([[0, 1000, 4000]], dtype=np.int32), mode="I")
    assert [read_rgb(_tiff_bytes(integer)).getpixel((x, 0))[0] for x in range(3)] == [0, 4, 16]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert [read_rgb(_tiff_bytes(floats)).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def _tiff_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    return buffer.getvalue()


def _png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_exif_rotated_images_are_read_upright_in_predict_and_in_the_dataset(tmp_path):
    path = sideways_jpeg(tmp_path / "phone.jpg")
    assert Image.open(path).size == (40, 20)  # as stored
    for image in (dataset_of(path)[0]["image"], read_image_file(path)):
        assert image.size == (20, 40)
        assert_close(image.getpixel((10, 5)), RED)
        assert_close(image.getpixel((10, 35)), BLUE)


def test_alpha_is_composited_on_white_and_palettes_read_as_colours():
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))  # fully transparent black ...
    rgba.putpixel((1, 0), RED + (255,))
    image = read_image(_png_bytes(rgba))
    assert image.getpixel((0, 0)) == (255, 255, 255)  # ... reads white, not black
    assert image.getpixel((1, 0)) == RED
    half = Image.new("LA", (1, 1), (0, 128))
    assert read_rgb(_png_bytes(half)).getpixel((0, 0)) == (127, 127, 127)
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, *RED] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    image = read_rgb(_png_bytes(palette))
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((1, 0)) == RED


def test_truncated_images_are_refused_everywhere_although_lavis_allows_them(tmp_path, capsys):
    assert ImageFile.LOAD_TRUNCATED_IMAGES  # LAVIS's global setting, left as LAVIS set it
    path = truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(
        InputError, match=r"cut\.jpg could not be decoded as an image \(image file is truncated"
    ):
        read_image_file(path)
    # lavis-gated-predict refuses it before it looks for a checkpoint
    assert predict.main(["--image", str(path), "--question", "Who painted this?"]) == 2
    assert "truncated" in capsys.readouterr().err
    # training with datasets.<name>.image_check: exists lets the file through the build; reading it fails
    with pytest.raises(OSError, match=r"cut\.jpg: image does not decode .*truncated"):
        dataset_of(path)[0]
    assert ImageFile.LOAD_TRUNCATED_IMAGES  # restored for the rest of the process
