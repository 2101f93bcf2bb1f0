"""A deterministic synthetic data set in the ArtQuest CSV layout, for the demo and the tests.

Each painting is drawn procedurally in one of several visually distinct "styles" (palette plus brush
texture) and carries a central shape drawn independently of the style, so the data asks two kinds of
question: one about the style (what the style regularisers are for) and one about the content.

    python -m lavis_gated.datasets.synthetic_artquest --out data/synthetic_artquest
"""

import argparse
import csv
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from lavis_gated.datasets.style_vocabulary import normalise_style
from lavis_gated.runners.threads import set_num_threads

STYLES = ("impressionism", "cubism", "pop art", "pointillism", "ukiyo-e", "minimalism")
SHAPES = ("circle", "square", "triangle")
QUESTION_TEMPLATES = {
    "style": ("What style is this painting?", "Which art movement does this painting belong to?"),
    "shape": (
        "What shape is in the center of the painting?",
        "Which shape does the painting show in the middle?",
    ),
}
CSV_COLUMNS = ("question_id", "image", "question", "answer", "question_type", "style")
DEFAULT_IMAGES_PER_STYLE = {"train": 50, "val": 10, "test": 15}


def _palette(rng, style):
    """RGB colours typical of each style (uint8 triples)."""
    if style == "impressionism":  # soft warm pastels over a green-blue base
        base = [(int(rng.integers(90, 140)), int(rng.integers(140, 190)), int(rng.integers(150, 210)))]
        return base + [
            (int(rng.integers(220, 256)), int(rng.integers(170, 230)), int(rng.integers(120, 200)))
            for _ in range(5)
        ]
    if style == "cubism":  # earth tones
        return [(int(r), int(r * 0.75), int(r * 0.45)) for r in rng.integers(70, 200, 6)]
    if style == "pop art":  # saturated primaries
        return [(230, 30, 40), (250, 220, 20), (20, 70, 220), (255, 255, 255), (240, 90, 170)]
    if style == "pointillism":  # saturated, complementary dots
        return [tuple(int(c) for c in rng.permutation([255, int(rng.integers(0, 120)), 0])) for _ in range(6)]
    if style == "ukiyo-e":  # indigo and beige
        return [(30, 50, 110), (60, 90, 150), (235, 220, 185), (200, 180, 140), (180, 60, 50)]
    if style == "minimalism":  # near-white with one accent
        return [(245, 245, 240), (230, 230, 228), tuple(int(c) for c in rng.integers(0, 256, 3))]
    raise ValueError(f"unknown synthetic style {style!r}; known: {STYLES}")


def _draw_texture(draw, rng, style, size, colours):
    """Paint the style's background texture over the whole canvas."""
    if style == "impressionism":
        draw.rectangle([0, 0, size, size], fill=colours[0])
        for _ in range(260):
            x, y = rng.integers(0, size, 2)
            w, h = rng.integers(3, 9), rng.integers(1, 4)
            draw.ellipse([x, y, x + w, y + h], fill=colours[rng.integers(len(colours))])
    elif style == "cubism":
        for _ in range(12):
            pts = [
                tuple(int(v) for v in rng.integers(-8, size + 8, 2)) for _ in range(int(rng.integers(3, 6)))
            ]
            draw.polygon(pts, fill=colours[rng.integers(len(colours))], outline=(20, 15, 10))
    elif style == "pop art":
        draw.rectangle([0, 0, size, size], fill=colours[rng.integers(3)])
        dot = colours[rng.integers(len(colours))]
        for gx in range(2, size, 6):
            for gy in range(2, size, 6):
                draw.ellipse([gx, gy, gx + 2, gy + 2], fill=dot)
    elif style == "pointillism":
        draw.rectangle([0, 0, size, size], fill=(240, 236, 225))
        for _ in range(500):
            x, y = rng.integers(0, size, 2)
            draw.point((int(x), int(y)), fill=colours[rng.integers(len(colours))])
    elif style == "ukiyo-e":
        draw.rectangle([0, 0, size, size], fill=colours[2])
        phase = rng.uniform(0, 2 * math.pi)
        for row in range(0, size, 5):
            pts = [(x, row + 2.0 * math.sin(x / 4.0 + phase + row)) for x in range(0, size + 1, 2)]
            draw.line(pts, fill=colours[int(rng.integers(2))], width=2)
    elif style == "minimalism":
        draw.rectangle([0, 0, size, size], fill=colours[0])
        split = int(rng.integers(size // 3, 2 * size // 3))
        draw.rectangle([0, split, size, size], fill=colours[1])


def _draw_shape(draw, rng, shape, size, colour):
    """Draw the central shape with a dark outline so it reads on every texture."""
    half = int(rng.integers(size // 6, size // 4))
    cx, cy = size // 2 + int(rng.integers(-3, 4)), size // 2 + int(rng.integers(-3, 4))
    box = [cx - half, cy - half, cx + half, cy + half]
    if shape == "circle":
        draw.ellipse(box, fill=colour, outline=(0, 0, 0), width=2)
    elif shape == "square":
        draw.rectangle(box, fill=colour, outline=(0, 0, 0), width=2)
    elif shape == "triangle":
        draw.polygon(
            [(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour, outline=(0, 0, 0)
        )
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def draw_painting(style, shape, seed, size=64):
    """Return one procedurally drawn painting as a PIL RGB image (deterministic in its arguments)."""
    rng = np.random.default_rng(seed)
    colours = _palette(rng, style)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    _draw_texture(draw, rng, style, size, colours)
    _draw_shape(draw, rng, shape, size, colours[int(rng.integers(len(colours)))])
    return image


def generate(out_dir, images_per_style=None, seed=0, size=64):
    """Write images/ and artquest_{train,val,test}.csv under out_dir; return {split: csv path}.

    Every image gets one question of each type; the shape is balanced per style and split.
    """
    images_per_style = dict(images_per_style or DEFAULT_IMAGES_PER_STYLE)
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    paths = {}
    for split_index, (split, count) in enumerate(sorted(images_per_style.items())):
        rows = []
        for style_index, style in enumerate(STYLES):
            for i in range(count):
                image_seed = seed * 1_000_003 + split_index * 100_003 + style_index * 10_007 + i
                shape = SHAPES[(i + style_index) % len(SHAPES)]
                file_name = f"{split}_{style.replace(' ', '_')}_{i:04d}.png"
                draw_painting(style, shape, image_seed, size).save(os.path.join(image_dir, file_name))
                # the answer is the style as the vocabulary spells it, so its tokens are the style tokens
                answers = {"style": normalise_style(style), "shape": shape}
                for question_type, templates in QUESTION_TEMPLATES.items():
                    rows.append(
                        {
                            "question_id": f"{split}-{len(rows):06d}",
                            "image": file_name,
                            "question": templates[(i + style_index) % len(templates)],
                            "answer": answers[question_type],
                            "question_type": question_type,
                            "style": style,
                        }
                    )
        paths[split] = os.path.join(out_dir, f"artquest_{split}.csv")
        with open(paths[split], "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (images/ and artquest_*.csv)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument(
        "--train", type=int, default=DEFAULT_IMAGES_PER_STYLE["train"], help="images per style"
    )
    parser.add_argument("--val", type=int, default=DEFAULT_IMAGES_PER_STYLE["val"], help="images per style")
    parser.add_argument("--test", type=int, default=DEFAULT_IMAGES_PER_STYLE["test"], help="images per style")
    args = parser.parse_args(argv)
    set_num_threads()
    counts = {"train": args.train, "val": args.val, "test": args.test}
    for split, path in generate(args.out, counts, seed=args.seed, size=args.size).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
