"""Style labels that do not come from the style CNN: SemArt's AUTHOR and TITLE joined with WikiArt's metadata
(artist, title, style), for the paintings both collections hold.

    python -m lavis_gated.wikiart.metadata_join --semart semart_train.csv --wikiart wikiart_meta.csv \
        --out data/artquest/image_styles_join.csv

The two collections spell names differently: SemArt writes "ALBERTINELLI, Mariotto" and "The Visitation",
WikiArt "Mariotto Albertinelli" and "the visitation" (or slugs such as "mariotto-albertinelli"). Both sides
are normalised the same way: accents removed (Unicode NFKD), case folded, "&" read as "and", every run of
punctuation a single space; an artist is the set of its words, so "LAST, First" and "First Last" meet. A
painting matches on (artist, title); a pair WikiArt lists with two different styles is ambiguous and left
out. The table written (image, style, source "metadata_join") is a style_table for the artquest builder; the
match rate is printed, since only the matched paintings get a label.
"""

import argparse
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from lavis_gated.datasets.annotation_files import read_table
from lavis_gated.styles import normalise_style
from lavis_gated.wikiart.style_table import write_table

SOURCE = "metadata_join"
_NOT_WORD = re.compile(r"[\W_]+")


def normalise_text(text) -> str:
    """Accents removed, case folded, "&" as "and", punctuation and runs of spaces as one space."""
    decomposed = unicodedata.normalize("NFKD", str(text))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().replace("&", " and ")
    return " ".join(_NOT_WORD.sub(" ", plain).split())


def artist_key(name) -> str:
    """An artist's words, sorted: "ALBERTINELLI, Mariotto", "Mariotto Albertinelli" and
    "mariotto-albertinelli" are one key."""
    return " ".join(sorted(normalise_text(name).split()))


def painting_key(artist, title) -> tuple[str, str]:
    return artist_key(artist), normalise_text(title)


@dataclass
class JoinResult:
    """rows: (image, style, source) per matched SemArt image; counts of what happened to the others."""

    rows: list = field(default_factory=list)
    semart_rows: int = 0
    matched: int = 0
    missed: int = 0
    ambiguous: int = 0
    missed_examples: list = field(default_factory=list)

    @property
    def match_rate(self) -> float:
        return self.matched / self.semart_rows if self.semart_rows else 0.0

    def summary(self) -> str:
        return (
            f"{self.matched} of {self.semart_rows} SemArt paintings matched WikiArt's metadata "
            f"(match rate {self.match_rate:.1%}); missed {self.missed}, ambiguous {self.ambiguous} (WikiArt "
            "lists the painting with two styles)"
        )


def wikiart_styles(frame, artist, title, style, where="WikiArt metadata"):
    """{(artist key, title key): normalised style, or None where WikiArt lists two styles}."""
    missing = [c for c in (artist, title, style) if c not in frame.columns]
    if missing:
        raise KeyError(f"{where}: no column(s) {missing}; columns found: {list(frame.columns)}")
    styles = {}
    for a, t, s in zip(frame[artist], frame[title], frame[style]):
        label = normalise_style(s) if isinstance(s, str) else ""
        if not label:
            continue
        key = painting_key(a, t)
        if key in styles and styles[key] not in (None, label):
            styles[key] = None
        else:
            styles.setdefault(key, label)
    return styles


def join(semart, wikiart, semart_columns=("IMAGE_FILE", "AUTHOR", "TITLE"), wikiart_columns=None, where=None):
    """JoinResult of SemArt's rows (a frame with image, author, title columns) against WikiArt's metadata
    (a frame with artist, title, style columns; wikiart_columns names them, default artist/title/style)."""
    image, author, title = semart_columns
    where = where or {}
    missing = [c for c in semart_columns if c not in semart.columns]
    if missing:
        raise KeyError(
            f"{where.get('semart', 'SemArt table')}: no column(s) {missing}; columns found: "
            f"{list(semart.columns)}"
        )
    styles = wikiart_styles(
        wikiart, *(wikiart_columns or ("artist", "title", "style")), where.get("wikiart", "WikiArt metadata")
    )
    result = JoinResult()
    for name, a, t in zip(semart[image], semart[author], semart[title]):
        result.semart_rows += 1
        key = painting_key(a, t)
        if key not in styles:
            result.missed += 1
            if len(result.missed_examples) < 5:
                result.missed_examples.append(f"{a} / {t}")
        elif styles[key] is None:
            result.ambiguous += 1
        else:
            result.matched += 1
            result.rows.append((name.strip(), styles[key], SOURCE))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--semart", required=True, help="SemArt's CSV (tab-separated, latin-1)")
    parser.add_argument("--semart-encoding", default="latin-1")
    parser.add_argument("--semart-delimiter", default="\t")
    parser.add_argument(
        "--semart-columns",
        nargs=3,
        default=("IMAGE_FILE", "AUTHOR", "TITLE"),
        metavar=("IMAGE", "AUTHOR", "TITLE"),
    )
    parser.add_argument("--wikiart", required=True, help="WikiArt metadata (CSV/TSV/JSON)")
    parser.add_argument("--wikiart-encoding", default="utf-8")
    parser.add_argument(
        "--wikiart-columns",
        nargs=3,
        default=("artist", "title", "style"),
        metavar=("ARTIST", "TITLE", "STYLE"),
    )
    parser.add_argument("--out", required=True, help="the style table to write (image,style,source)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    semart = read_table(args.semart, args.semart_encoding, args.semart_delimiter)
    wikiart = read_table(args.wikiart, args.wikiart_encoding)
    result = join(
        semart,
        wikiart,
        tuple(args.semart_columns),
        tuple(args.wikiart_columns),
        {"semart": args.semart, "wikiart": args.wikiart},
    )
    print(result.summary())
    if result.missed_examples:
        print("first misses: " + "; ".join(result.missed_examples))
    if not result.rows:
        raise ValueError(f"no SemArt painting of {args.semart} matched {args.wikiart}: nothing to write")
    write_table(("image", "style", "source"), result.rows, args.out)
    counts = Counter(row[1] for row in result.rows)
    print(
        f"wrote {len(result.rows)} rows to {args.out}; per style: "
        + ", ".join(f"{s} {n}" for s, n in counts.most_common())
    )
    return result


if __name__ == "__main__":
    main()
