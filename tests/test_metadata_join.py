"""SemArt AUTHOR + TITLE joined with WikiArt metadata: style labels that do not come from the style CNN."""

import pandas as pd
import pytest

from lavis_gated.datasets.style_sources import StyleTable
from lavis_gated.wikiart import metadata_join
from lavis_gated.wikiart.metadata_join import artist_key, join, normalise_text

SEMART = pd.DataFrame(
    {
        "IMAGE_FILE": ["01.jpg", "02.jpg", "03.jpg", "04.jpg", "05.jpg", "06.jpg"],
        "AUTHOR": [
            "ALBERTINELLI, Mariotto",  # "LAST, First" against WikiArt's "First Last"
            "DÜRER, Albrecht",  # accents
            "MONET, Claude",
            "HOKUSAI, Katsushika",  # not in the WikiArt table
            "MANET, Édouard",  # WikiArt lists this title twice with two styles: ambiguous
            "VERMEER, Johannes",
        ],
        "TITLE": [
            "The Visitation",
            "Self-Portrait at 28",  # hyphen vs space
            "Impression, Sunrise",  # punctuation and case
            "The Great Wave",
            "Olympia",
            "Girl with a Pearl Earring",  # the artist matches, the title does not
        ],
    }
)
WIKIART = pd.DataFrame(
    {
        "artist": [
            "Mariotto Albertinelli",
            "albrecht-durer",
            "Claude Monet",
            "Edouard Manet",
            "edouard manet",
            "Johannes Vermeer",
        ],
        "title": [
            "the visitation",
            "Self Portrait at 28",
            "IMPRESSION SUNRISE",
            "Olympia",
            "olympia",
            "The Milkmaid",
        ],
        "style": [
            "High_Renaissance",
            "Northern Renaissance",
            "Impressionism",
            "Realism",
            "Impressionism",
            "Baroque",
        ],
    }
)


def test_normalisation_removes_case_accents_and_punctuation():
    assert (
        normalise_text("Self-Portrait at 28")
        == normalise_text("self portrait AT 28")
        == "self portrait at 28"
    )
    assert normalise_text("Dürer & Co.") == "durer and co"
    assert (
        artist_key("ALBERTINELLI, Mariotto") == artist_key("mariotto-albertinelli") == "albertinelli mariotto"
    )


def test_join_reports_matches_misses_and_ambiguous_paintings():
    result = join(SEMART, WIKIART)
    assert result.rows == [
        ("01.jpg", "high renaissance", "metadata_join"),
        ("02.jpg", "northern renaissance", "metadata_join"),
        ("03.jpg", "impressionism", "metadata_join"),
    ]
    assert (result.semart_rows, result.matched, result.missed, result.ambiguous) == (6, 3, 2, 1)
    assert result.match_rate == pytest.approx(0.5)
    assert "3 of 6 SemArt paintings matched" in result.summary() and "50.0%" in result.summary()
    assert result.missed_examples == [
        "HOKUSAI, Katsushika / The Great Wave",
        "VERMEER, Johannes / Girl with a Pearl Earring",
    ]


def test_join_names_a_missing_column():
    with pytest.raises(KeyError, match=r"no column\(s\) \['AUTHOR'\]"):
        join(SEMART.drop(columns=["AUTHOR"]), WIKIART)
    with pytest.raises(KeyError, match=r"wiki.csv: no column\(s\) \['style'\]"):
        join(SEMART, WIKIART.drop(columns=["style"]), where={"wikiart": "wiki.csv"})


def test_the_command_writes_a_style_table_whose_labels_say_where_they_come_from(tmp_path, capsys):
    semart, wikiart, out = tmp_path / "semart.csv", tmp_path / "wikiart.csv", tmp_path / "styles.csv"
    SEMART.to_csv(semart, sep="\t", index=False, encoding="latin-1")  # SemArt's own format
    WIKIART.to_csv(wikiart, index=False)
    metadata_join.main(["--semart", str(semart), "--wikiart", str(wikiart), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "3 of 6 SemArt paintings matched WikiArt's metadata (match rate 50.0%)" in printed
    table = StyleTable.read(str(out))
    assert table.styles == {
        "01.jpg": "high renaissance",
        "02.jpg": "northern renaissance",
        "03.jpg": "impressionism",
    }
    assert set(table.sources.values()) == {"metadata_join"}
