"""A deterministic synthetic data set in the ArtQuest CSV layout, with captions, for the demo and the tests.

Each painting is drawn procedurally in one of several visually distinct "styles" (palette plus brush
texture) and carries a central shape drawn independently of the style. Two question sets:
- `style-shape` (default): one question about the style and one about the shape, the style in a `style`
  column;
- `artquest`: ArtQuest's six question types (artist, school, timeframe, type, technique, title) with answers
  written as ArtQuest writes them (capitalised, hyphenated) and no style question; the labels go to a style
  table (style_table.csv: image, style, source), as real ArtQuest gets them from a join. Only the style probe
  can then carry the style terms.

    python -m lavis_gated.datasets.synthetic_artquest --output-dir data/synthetic_artquest
    python -m lavis_gated.datasets.synthetic_artquest --output-dir data/synthetic_artquest_types \
        --question-set artquest
"""

import csv
import json
import math
import os

from PIL import Image, ImageDraw

from lavis_gated.common.command_line import add_flags, command_parser
from lavis_gated.common.threads import set_num_threads
from lavis_gated.styles import normalise_style

STYLES = ("impressionism", "cubism", "pop art", "pointillism", "ukiyo-e", "minimalism")
SHAPES = ("circle", "square", "triangle")
QUESTION_TEMPLATES = {
    "style": ("What style is this painting?", "Which art movement does this painting belong to?"),
    "shape": (
        "What shape is in the center of the painting?",
        "Which shape does the painting show in the middle?",
    ),
}
# --real-looking: answers as real ArtQuest writes them (capitalised, hyphenated, bracketed) and style labels
# as WikiArt's folder names spell them, so that answers and labels differ in form as they do in real data
REAL_LOOKING = {  # style: (answer, style label)
    "impressionism": ("Impressionism", "Impressionism"),
    "cubism": ("Cubism", "Cubism"),
    "pop art": ("Pop Art", "Pop_Art"),
    "pointillism": ("Pointillism", "Pointillism"),
    "ukiyo-e": ("Ukiyo-e", "Ukiyo_e"),
    "minimalism": ("Minimalism (Modern)", "Minimalism_Modern"),
}
CSV_COLUMNS = ("question_id", "image", "question", "answer", "question_type", "style")
QUESTION_SETS = ("style-shape", "artquest")
STYLE_TABLE = "style_table.csv"
# --question-set artquest: ArtQuest's question types and phrasings; no question asks for the style
ARTQUEST_TEMPLATES = {
    "artist": ("Who is the author of this painting?", "Who painted this?"),
    "school": ("What school does this painting belong to?", "Which school is the painter from?"),
    "timeframe": ("When was this painting made?", "What is the timeframe of this painting?"),
    "type": ("What type of painting is this?", "What is the genre of this painting?"),
    "technique": ("What technique was used for this painting?", "How was this painting made?"),
    "title": ("What is the title of this painting?", "What is this painting called?"),
}
# per style: painters (each with their school) and a timeframe; as in SemArt, the school is a nationality and
# the timeframe a 50-year span, neither of them a style
PAINTERS = {
    "impressionism": (
        ("MORIN, Claire", "French"),
        ("ASHWORTH, Edith", "English"),
        ("VAN DER LEE, Jan", "Dutch"),
    ),
    "cubism": (("OLIVARES, Tomás", "Spanish"), ("BRENNER, Kurt", "German"), ("DUVAL, Henri", "French")),
    "pop art": (("KESSLER, Ruth", "American"), ("HALE, Martin", "English"), ("NOVAK, Pavel", "Other")),
    "pointillism": (("LEMAIRE, Paul", "French"), ("DE WIT, Anna", "Flemish"), ("ROSSI, Gino", "Italian")),
    "ukiyo-e": (("TANAKA, Hiro", "Other"), ("MORI, Aki", "Other"), ("ENDO, Kei", "Other")),
    "minimalism": (("STRAND, Liv", "Other"), ("WEBER, Jonas", "German"), ("FALK, Mara", "American")),
}
TIMEFRAMES = {
    "impressionism": "1851-1900",
    "cubism": "1901-1950",
    "pop art": "1951-2000",
    "pointillism": "1851-1900",
    "ukiyo-e": "1801-1850",
    "minimalism": "1951-2000",
}
TYPES = {"circle": "portrait", "square": "landscape", "triangle": "religious"}
TECHNIQUES = ("Oil on canvas", "Tempera on wood", "Watercolour on paper")
TITLES = {
    "circle": "Self-Portrait with a Circle",
    "square": "Still-Life in a Square",
    "triangle": "The Triangle",
}
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


def _shared_palette(rng):
    """--shared-palette: six colours drawn alike for every style, so that only the brushwork tells styles
    apart."""
    return [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(6)]


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


STYLE_FOLDERS_INDEX = 9  # the style folders' place among the splits' seeds: no split draws their paintings


def _seed_and_shape(seed, split_index, style_index, i):
    """The i-th painting of a style in a split: its drawing seed, and its shape (balanced per style)."""
    image_seed = seed * 1_000_003 + split_index * 100_003 + style_index * 10_007 + i
    return image_seed, SHAPES[(i + style_index) % len(SHAPES)]


def draw_painting(style, shape, seed, size=64, shared_palette=False):
    """Return one procedurally drawn painting as a PIL RGB image (deterministic in its arguments).
    shared_palette: colours that say nothing of the style (_shared_palette)."""
    import numpy as np  # lazily: --help of the command stays fast

    rng = np.random.default_rng(seed)
    colours = _shared_palette(rng) if shared_palette else _palette(rng, style)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    _draw_texture(draw, rng, style, size, colours)
    _draw_shape(draw, rng, shape, size, colours[int(rng.integers(len(colours)))])
    return image


def answers_and_label(style, shape, real_looking=False):
    """({question type: answer}, style label) of a painting."""
    if real_looking:
        answer, label = REAL_LOOKING[style]
        return {"style": answer, "shape": shape.capitalize()}, label
    # the answer is the style as the vocabulary spells it
    return {"style": normalise_style(style), "shape": shape}, style


def artquest_answers(style, shape, i):
    """{ArtQuest question type: answer} of the i-th painting of a style with that shape."""
    painter, school = PAINTERS[style][i % len(PAINTERS[style])]
    return {
        "artist": painter,
        "school": school,
        "timeframe": TIMEFRAMES[style],
        "type": TYPES[shape],
        "technique": TECHNIQUES[i % len(TECHNIQUES)],
        "title": TITLES[shape],
    }


def generate(
    out_dir,
    images_per_style=None,
    seed=0,
    size=64,
    real_looking=False,
    shared_palette=False,
    question_set="style-shape",
):
    """Write images/, artquest_{train,val,test}.csv and captions_{train,val,test}.json under out_dir (and,
    for question_set artquest, style_table.csv); return {split: csv path} (and "style_table").

    Every image gets one question of each type; the shape is balanced per style and split. real_looking:
    answers such as "Ukiyo-e", "Pop Art", "Minimalism (Modern)", "Circle" and labels such as "Ukiyo_e"
    (REAL_LOOKING) instead of the vocabulary's lower-case names; the images are the same. shared_palette:
    every style's colours drawn alike (draw_painting). question_set "artquest": ArtQuest's six question types
    (artist_answers) and no style column: the labels (WikiArt folder spellings, as with real_looking) go to
    out_dir/style_table.csv (image, style, source "metadata"), whose path is returned as "style_table".
    """
    if question_set not in QUESTION_SETS:
        raise ValueError(f"question_set is {question_set!r}; it must be one of {list(QUESTION_SETS)}")
    artquest = question_set == "artquest"
    images_per_style = dict(images_per_style or DEFAULT_IMAGES_PER_STYLE)
    labels = []
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    paths = {}
    for split, paintings in split_paintings(images_per_style, seed).items():
        rows = []
        for file_name, style, shape, image_seed, variant, i in paintings:
            painting = draw_painting(style, shape, image_seed, size, shared_palette)
            painting.save(os.path.join(image_dir, file_name))
            answers, label = answers_and_label(style, shape, real_looking or artquest)
            templates_of = QUESTION_TEMPLATES
            if artquest:
                answers, templates_of = artquest_answers(style, shape, i), ARTQUEST_TEMPLATES
                labels.append((file_name, label, "metadata"))
            for question_type, templates in templates_of.items():
                rows.append(
                    {
                        "question_id": f"{split}-{len(rows):06d}",
                        "image": file_name,
                        "question": templates[variant % len(templates)],
                        "answer": answers[question_type],
                        "question_type": question_type,
                        **({} if artquest else {"style": label}),
                    }
                )
        paths[split] = os.path.join(out_dir, f"artquest_{split}.csv")
        with open(paths[split], "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=[c for c in CSV_COLUMNS if c != "style" or not artquest]
            )
            writer.writeheader()
            writer.writerows(rows)
    if artquest:
        paths["style_table"] = os.path.join(out_dir, STYLE_TABLE)
        with open(paths["style_table"], "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(("image", "style", "source"))
            writer.writerows(labels)
    write_captions(out_dir, images_per_style, seed, real_looking)
    return paths


def split_paintings(images_per_style, seed=0):
    """{split: [(image file name, style, shape, drawing seed, variant, index within its style)]}: every
    painting generate() draws, in its order; variant picks the question (and caption) wording."""
    out = {}
    for split_index, (split, count) in enumerate(sorted(images_per_style.items())):
        out[split] = [
            (f"{split}_{style.replace(' ', '_')}_{i:04d}.png", style, shape, image_seed, i + style_index, i)
            for style_index, style in enumerate(STYLES)
            for i in range(count)
            for image_seed, shape in [_seed_and_shape(seed, split_index, style_index, i)]
        ]
    return out


def captions_of(style, shape, real_looking=False):
    """Three reference captions of a painting, each naming its style and its shape ("an ukiyo-e print of a
    circle"), as the answers spell the style."""
    name = answers_and_label(style, shape, real_looking)[0]["style"] if real_looking else style
    work = "print" if style == "ukiyo-e" else "painting"
    article = "an" if name[0].lower() in "aeiou" else "a"
    return [
        f"{article} {name} {work} of a {shape}",
        f"a {shape} in the center of {article} {name} {work}",
        f"{article} {name} {work} with a {shape} in the middle",
    ]


def write_captions(out_dir, images_per_style, seed=0, real_looking=False):
    """captions_<split>.json beside the ArtQuest files, in the ArtCap-style JSON layout ({"image",
    "captions": [three captions], "style"} per painting) read by the art_captions builder; the images are
    generate()'s. Returns {split: path}."""
    paths = {}
    for split, paintings in split_paintings(images_per_style, seed).items():
        records = [
            {
                "image": file_name,
                "captions": captions_of(style, shape, real_looking),
                "style": answers_and_label(style, shape, real_looking)[1],
            }
            for file_name, style, shape, _, _, _ in paintings
        ]
        paths[split] = os.path.join(out_dir, f"captions_{split}.json")
        with open(paths[split], "w", encoding="utf-8") as handle:
            json.dump(records, handle, indent=1)
    return paths


def write_style_folders(out_dir, per_style, seed=0, size=64, shared_palette=False):
    """Write a WikiArt-format folder out_dir/<style>/<image>.png (per_style paintings of each style, none of
    them in the ArtQuest splits) to train a style CNN on (lavis-gated-train-style-cnn); returns out_dir."""
    for style_index, style in enumerate(STYLES):
        folder = os.path.join(out_dir, style.replace(" ", "_").replace("-", "_"))
        os.makedirs(folder, exist_ok=True)
        for i in range(per_style):
            image_seed, shape = _seed_and_shape(seed, STYLE_FOLDERS_INDEX, style_index, i)
            painting = draw_painting(style, shape, image_seed, size, shared_palette)
            painting.save(os.path.join(folder, f"{i:05d}.png"))
    return out_dir


def main(argv=None):
    parser = command_parser(
        "lavis-gated-make-demo-data",
        "Write synthetic ArtQuest-format data (paintings whose style and shape are known, split CSVs) for "
        "the demo, the tests and the ablations.",
        "lavis-gated-make-demo-data --output-dir data/synthetic_artquest",
        "data.md",
    )
    add_flags(
        parser,
        "output-dir",
        "num-threads",
        output_dir={"required": True, "help": "output folder (images/, artquest_*.csv and captions_*.json)"},
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument(
        "--train", type=int, default=DEFAULT_IMAGES_PER_STYLE["train"], help="images per style"
    )
    parser.add_argument("--val", type=int, default=DEFAULT_IMAGES_PER_STYLE["val"], help="images per style")
    parser.add_argument("--test", type=int, default=DEFAULT_IMAGES_PER_STYLE["test"], help="images per style")
    parser.add_argument(
        "--real-looking",
        action="store_true",
        help="answers as real ArtQuest writes them (Ukiyo-e, Pop Art, Minimalism (Modern), Circle) and "
        "style labels as WikiArt folders (Ukiyo_e); the default writes lower-case vocabulary names",
    )
    parser.add_argument(
        "--shared-palette",
        action="store_true",
        help="every style's colours drawn alike: only the brushwork tells styles apart",
    )
    parser.add_argument(
        "--style-folders",
        type=int,
        default=0,
        metavar="N",
        help="also write N more paintings per style under OUT/style_folders/<style>/ (WikiArt's layout), "
        "to train a style CNN on",
    )
    parser.add_argument(
        "--question-set",
        choices=QUESTION_SETS,
        default="style-shape",
        help="style-shape: a style and a shape question per painting, a style column; artquest: ArtQuest's "
        "six question types (no style question), the labels in OUT/style_table.csv",
    )
    args = parser.parse_args(argv)
    set_num_threads({"num_threads": args.num_threads})
    counts = {"train": args.train, "val": args.val, "test": args.test}
    paths = generate(
        args.output_dir,
        counts,
        seed=args.seed,
        size=args.size,
        real_looking=args.real_looking,
        shared_palette=args.shared_palette,
        question_set=args.question_set,
    )
    for split, path in paths.items():
        print(f"{split}: {path}")
    if args.style_folders:
        folders = os.path.join(args.output_dir, "style_folders")
        write_style_folders(folders, args.style_folders, args.seed, args.size, args.shared_palette)
        print(f"style folders: {folders}")


if __name__ == "__main__":
    main()
