"""Surrogates side by side: the numbers taken from each evaluation, the table, the sentence."""

from __future__ import annotations

from calosurrogate.report.comparison import headline, html_section, markdown_table, what_training_buys


def _metrics(auc: float, fpd: float, word: str, n: int) -> dict:
    return {
        "verdict": {"word": word},
        "n_showers": {"reference": n, "generated": n},
        "classifiers": {"cls-high": {"auc": auc}},
        "scalars": {"FPD x 1e3": {"value": fpd}, "CFD voxel": {"value": 9.5}},
    }


def _entries() -> list[dict]:
    quick = {
        "label": "flow (trained here)",
        "what": "a flow",
        "training": "5.0 min",
        "training_minutes": 5.0,
        "ms_per_shower": 0.5,
        "report": "report.html",
        **headline(_metrics(0.9998, 1180.0, "Separable", 20000)),
    }
    shipped = {"label": "ds2-diffusion (shipped)", "what": "a diffusion model", "training": "60 min",
               "training_minutes": 60.0, "ms_per_shower": 20.0, "report": "../evaluation-shipped/report.html",
               **headline(_metrics(0.56, 205.0, "Close", 5000))}  # fmt: skip
    return [quick, shipped]


def test_headline_takes_the_numbers_of_an_evaluation() -> None:
    numbers = headline(_metrics(0.61, 300.0, "Close", 5000))
    assert numbers == {"verdict": "Close", "showers": 5000, "auc_high": 0.61, "fpd_x1e3": 300.0, "cfd_voxel": 9.5}
    assert headline({})["auc_high"] is None  # an evaluation without a classifier


def test_the_sentence_says_what_training_buys_and_costs() -> None:
    sentence = what_training_buys(_entries())
    assert "60 minutes of training instead of 5" in sentence
    assert "from 1.000 to 0.560" in sentence and "from 1,180 to 205" in sentence
    assert "at 40 times the sampling time per shower" in sentence
    assert what_training_buys(_entries()[:1]) == ""


def test_table_and_section_name_every_model_and_link_its_report() -> None:
    table = markdown_table(_entries())
    assert table.count("\n| ") == 2 and "flow (trained here)" in table and "ds2-diffusion (shipped)" in table
    assert "20,000" in table and "5,000" in table and "Separable" in table and "Close" in table
    section = html_section(_entries())
    assert '<a href="../evaluation-shipped/report.html">ds2-diffusion (shipped)</a>' in section
    assert html_section([]) == "" and markdown_table([]) == ""
    entry = dict(_entries()[1], ms_per_shower=None)
    assert "not timed (reused)" in markdown_table([entry])
