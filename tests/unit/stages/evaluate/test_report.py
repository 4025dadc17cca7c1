"""The HTML report and the front plot, built from a real summary of scored rows."""

from __future__ import annotations

import base64
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from paretohqd.stages.evaluate.metrics import method_hypervolume, method_intervals, summarise
from paretohqd.stages.evaluate.report import plot_fronts, render_report

OBJ = ["helpful", "harmless"]
LO, HI = [-2.0, -1.0], [2.0, 3.0]


def scored_rows(methods: dict[str, list[str]], m: int = 2, n: int = 12) -> pl.DataFrame:
    """Random scores for ``n`` prompts per (method, pref_id), plus a base model."""
    rng = np.random.default_rng(0)
    names = OBJ if m == 2 else [*OBJ, "humor"][:m]
    frames = []
    for method, prefs in {"base": ["base"], **methods}.items():
        for pref in prefs:
            scores = rng.normal(size=(n, m))
            frames.append(
                pl.DataFrame(
                    {
                        "method": method,
                        "pref_id": pref,
                        "prompt_id": [f"p{i}" for i in range(n)],
                        "response": ["x"] * 2 + ["a b c d e f"] * (n - 2),
                        **{name: scores[:, k] for k, name in enumerate(names)},
                    }
                )
            )
    return pl.concat(frames)


METHODS = {"paretohqd": ["w00", "w05", "w10"], "<script>alert(1)</script>": ["w05"]}
WEIGHTS = {"w00": (0.0, 1.0), "w05": (0.5, 0.5), "w10": (1.0, 0.0)}


@pytest.fixture
def summary() -> pl.DataFrame:
    return summarise(scored_rows(METHODS), objectives=OBJ, n_boot=100, seed=0)


def methods_frame(budgets: dict[str, dict]) -> pl.DataFrame:
    """method_intervals over the same rows as ``summary``, with budget columns added."""
    table = method_intervals(
        scored_rows(METHODS), objectives=OBJ, weights=WEIGHTS, lo=LO, hi=HI, n_boot=200
    )
    cols = sorted({k for b in budgets.values() for k in b})
    extra = pl.DataFrame(
        [{"method": m, **{c: budgets.get(m, {}).get(c) for c in cols}} for m in table["method"]],
        schema={
            "method": pl.String,
            **{c: pl.String if c in ("start", "flag") else pl.Float64 for c in cols},
        },
    )
    return table.join(extra, on="method", how="left", maintain_order="left")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


class TagCounter(HTMLParser):
    """Counts start and end tags, and collects text, to check the page is well nested."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: dict[str, int] = {}
        self.closed: dict[str, int] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.opened[tag] = self.opened.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        self.closed[tag] = self.closed.get(tag, 0) + 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


# --------------------------------------------------------------------------------------------
# plot_fronts


def test_plot_fronts_writes_a_png(tmp_path: Path, summary: pl.DataFrame) -> None:
    import matplotlib.image as mpimg

    out = plot_fronts(
        summary,
        OBJ,
        tmp_path / "fronts.png",
        rays=[("w00", [0.0, 1.0]), ("w05", [0.5, 0.5]), ("w10", [1.0, 0.0])],
        lo=LO,
        hi=HI,
    )
    assert out == tmp_path / "fronts.png"
    width, height = png_size(out)
    image = mpimg.imread(out)
    assert image.shape[:2] == (height, width)
    assert image[..., :3].std() > 0.01  # something was drawn
    assert [p.name for p in tmp_path.iterdir()] == ["fronts.png"]  # no temp files left


def test_plot_fronts_pairwise_panels_for_three_objectives(tmp_path: Path) -> None:
    names = [*OBJ, "humor"]
    s3 = summarise(scored_rows({"m": ["a", "b"]}, m=3), objectives=names, n_boot=20)
    two = plot_fronts(
        summarise(scored_rows({"m": ["a"]}), objectives=OBJ, n_boot=20),
        OBJ,
        tmp_path / "two.png",
        lo=-3,
        hi=3,
    )
    three = plot_fronts(
        s3, names, tmp_path / "three.png", rays=[("a", [0.2, 0.3, 0.5])], lo=-3, hi=3
    )
    # three pairs side by side: about three times as wide as the single panel
    assert png_size(three)[0] > 2.5 * png_size(two)[0]


def test_plot_fronts_rejects(tmp_path: Path, summary: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="ray 'w05' has 3 weights"):
        plot_fronts(summary, OBJ, tmp_path / "f.png", rays=[("w05", [0.2, 0.3, 0.5])], lo=0, hi=1)
    with pytest.raises(ValueError, match="at least two objectives"):
        plot_fronts(summary, ["helpful"], tmp_path / "f.png", lo=0, hi=1)
    with pytest.raises(ValueError, match="'humor_mean'"):
        plot_fronts(summary, ["helpful", "humor"], tmp_path / "f.png", lo=0, hi=1)
    with pytest.raises(ValueError, match="hi > lo"):
        plot_fronts(summary, OBJ, tmp_path / "f.png", lo=[0, 1], hi=[1, 1])
    assert not (tmp_path / "f.png").exists()


# --------------------------------------------------------------------------------------------
# render_report


BUDGETS = {
    "paretohqd": {
        "start": "base",
        "steps": 400.0,
        "tokens": 12345.0,
        "wall_s": 12.3,
        "cpu_s": 40.5,
    },
    "<script>alert(1)</script>": {
        "start": "sft",
        "steps": 100.0,
        "tokens": 3000.0,
        "wall_s": 7.0,
        "flag": "steps 0.25× paretohqd; tokens 0.24× paretohqd",
    },
}


def render(
    tmp_path: Path, summary: pl.DataFrame, budgets: dict | None = None, **overrides: object
) -> Path:
    fronts = plot_fronts(summary, OBJ, tmp_path / "fronts.png", lo=LO, hi=HI)
    kwargs: dict = {
        "objectives": OBJ,
        "title": "run <demo> & friends",
        "images": {"fronts": fronts},
        "links": {"w05 card": "../shards/round1/w05/README.md", "odd <name>": "cards/a b.md"},
        "normalisation": {
            "min": dict(zip(OBJ, LO, strict=True)),
            "max": dict(zip(OBJ, HI, strict=True)),
            "reference_point": 0.0,
        },
        "out": tmp_path / "report" / "report.html",
    }
    kwargs |= overrides
    return render_report(summary, methods_frame(BUDGETS if budgets is None else budgets), **kwargs)


def test_report_contains_the_numbers(tmp_path: Path, summary: pl.DataFrame) -> None:
    out = render(tmp_path, summary)
    page = out.read_text()
    hv = method_hypervolume(summary, OBJ, lo=LO, hi=HI)
    assert set(hv) == {"base", "paretohqd", "<script>alert(1)</script>"}
    for row in methods_frame(BUDGETS).iter_rows(named=True):
        assert hv[row["method"]] == pytest.approx(row["hypervolume"])
        cell = f"<td>{row['hypervolume']:.4f} [{row['hv_lo']:.4f}, {row['hv_hi']:.4f}]</td>"
        assert cell in page
    pf = methods_frame(BUDGETS).filter(pl.col("method") == "paretohqd").row(0, named=True)
    assert f"<td>{pf['pref_following']:.2f} [{pf['pf_lo']:.2f}, {pf['pf_hi']:.2f}]</td>" in page
    for row in summary.to_dicts():
        for o in OBJ:
            cell = f"{row[f'{o}_mean']:.4f} [{row[f'{o}_lo']:.4f}, {row[f'{o}_hi']:.4f}]"
            assert cell in page
    # two of twelve responses per model are one token long: 16.7% collapsed, per model and pooled
    assert page.count("<td>16.7%</td>") == summary.height + 3
    for text in (
        "12.3",
        "40.5",
        "7.0",
        "wall s",
        "CPU s",
        "400",
        "12,345",
        "shared SFT (sft_init)",
    ):
        assert f">{text}<" in page
    assert "Budgets differ by more than 2×" in page and "steps 0.25× paretohqd" in page
    for bound in (*LO, *HI):
        assert f"<td>{bound:.4f}</td>" in page
    assert "reference point" in page


def test_report_embeds_images_and_links(tmp_path: Path, summary: pl.DataFrame) -> None:
    page = render(tmp_path, summary).read_text()
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 1
    assert base64.b64decode(uris[0]) == (tmp_path / "fronts.png").read_bytes()
    assert 'href="../shards/round1/w05/README.md"' in page
    assert 'href="cards/a%20b.md"' in page
    assert "odd &lt;name&gt;" in page
    # self-contained: nothing fetched from elsewhere
    assert "<script" not in page and "<link" not in page and "http" not in page


def test_report_escapes_text(tmp_path: Path, summary: pl.DataFrame) -> None:
    page = render(tmp_path, summary).read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "run &lt;demo&gt; &amp; friends" in page
    parser = TagCounter()
    parser.feed(page)
    for tag in ("table", "tr", "td", "th", "h2", "figure", "a", "ul", "li"):
        assert parser.opened.get(tag, 0) == parser.closed.get(tag, 0), tag
    assert any("<script>alert(1)</script>" in t for t in parser.text)  # shown, as text


def test_report_marks_clipped_means(tmp_path: Path, summary: pl.DataFrame) -> None:
    narrow = {"min": [-0.01, -0.01], "max": [0.01, 0.01], "reference_point": [0.0, 0.0]}
    page = render(tmp_path, summary, normalisation=narrow).read_text()
    assert page.count(" †</td>") == summary.height  # every mean is outside so tight a box
    assert "<td>-0.0100</td>" in page


def test_report_is_deterministic_and_atomic(tmp_path: Path, summary: pl.DataFrame) -> None:
    first = render(tmp_path, summary).read_bytes()
    second = render(tmp_path, summary).read_bytes()
    assert first == second
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["report.html"]


def test_report_without_images_links_or_budgets(tmp_path: Path, summary: pl.DataFrame) -> None:
    page = render(tmp_path, summary, budgets={}, images={}, links={}).read_text()
    assert "data:image" not in page and "<a " not in page
    assert "No budgets recorded" in page


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"links": {"x": "javascript:alert(1)"}}, "scheme 'javascript'"),
        ({"links": {"x": "/etc/passwd"}}, "absolute"),
        ({"images": {"nope": Path("missing.png")}}, "'nope'.*does not exist"),
        ({"normalisation": {"min": 0.0}}, "no 'max' entry"),
        ({"normalisation": {"min": {"helpful": 0.0}, "max": 1.0}}, r"\['harmless'\]"),
        ({"normalisation": {"min": 1.0, "max": 1.0}}, "hi > lo"),
        ({"objectives": ["helpful", "humor"]}, "'humor_mean'"),
    ],
)
def test_report_rejects(tmp_path: Path, summary: pl.DataFrame, overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        render(tmp_path, summary, **overrides)
    assert not (tmp_path / "report" / "report.html").exists()


def test_report_rejects_non_png(tmp_path: Path, summary: pl.DataFrame) -> None:
    fake = tmp_path / "plot.png"
    fake.write_text("not an image")
    with pytest.raises(ValueError, match="not a PNG"):
        render(tmp_path, summary, images={"plot": fake})


# --------------------------------------------------------------------------------------------
# issue #17: zoomed fronts, final-step jumps, shard links of every round


def test_fronts_zoom_to_the_points_with_a_margin() -> None:
    from paretohqd.stages.evaluate.report import ZOOM_MARGIN, zoom

    x, y = np.array([0.46, 0.62, 0.5]), np.array([0.37, 0.47, 0.4])
    (x0, x1), (y0, y1) = zoom(x, y)
    assert x1 - x0 == pytest.approx(y1 - y0)  # equal aspect keeps angles to the rays true
    assert x0 < 0.46 and x1 > 0.62 and y0 < 0.37 and y1 > 0.47
    assert (x1 - x0) == pytest.approx(0.16 / (1 - 2 * ZOOM_MARGIN))  # the wider span + margin
    assert x1 - x0 < 0.25  # not the unit square of before
    (a0, a1), _ = zoom(np.array([0.5]), np.array([0.5]))
    assert a0 < 0.5 < a1  # a single point still gets a panel


def test_ray_labels_sit_where_the_ray_leaves_the_panel() -> None:
    from paretohqd.stages.evaluate.report import ray_label_at

    box = ((0.4, 0.6), (0.4, 0.6))
    assert ray_label_at((0.5, 0.5), *box) == pytest.approx((0.5, 0.5))  # its end is inside
    # the diagonal from (1, 1) toward (0, 0) crosses the panel and leaves it at (0.4, 0.4)
    assert ray_label_at((0.0, 0.0), *box) == pytest.approx((0.4, 0.4))
    assert ray_label_at((1.0, 0.0), *box) is None  # along the right edge of the square: misses


def test_report_warns_of_final_step_jumps(tmp_path: Path, summary: pl.DataFrame) -> None:
    flags = {"raco · pref-000-100": "last step 11: loss 1.307 is 1.84x the median 0.7095"}
    page = render(tmp_path, summary, curve_flags=flags).read_text()
    assert "<h2>Training curves</h2>" in page
    assert "raco · pref-000-100: last step 11: loss 1.307 is 1.84x" in page
    assert "Training curves" not in render(tmp_path / "b", summary).read_text()


def test_shard_links_keep_every_round(tmp_path: Path) -> None:
    from paretohqd.stages.evaluate.stage import shard_label, shard_links

    for shard in ("round1/pref-030-070", "round2/pref-030-070", "linear/pref-030-070"):
        (tmp_path / "shards" / shard).mkdir(parents=True)
        (tmp_path / "shards" / shard / "README.md").write_text("card")
    roots = [
        (shard_label({"round": 1}), tmp_path / "shards/round1"),
        (shard_label({"round": 1, "arm": "linear"}), tmp_path / "shards/linear"),
        (shard_label({"round": 2}), tmp_path / "shards/round2"),
    ]
    assert shard_links(tmp_path, roots) == {
        "round 1 · pref-030-070": "../shards/round1/pref-030-070/README.md",
        "linear arm (round 1) · pref-030-070": "../shards/linear/pref-030-070/README.md",
        "round 2 · pref-030-070": "../shards/round2/pref-030-070/README.md",
    }


def test_losses_figure_from_curves(tmp_path: Path) -> None:
    from paretohqd.stages.evaluate.stage import curve_jumps, plot_losses

    curves = {
        "raco": [("pref-000-100", list(range(6)), [0.7, 0.7, 0.71, 0.7, 0.69, 1.3])],
        "sft": [("pref-050-050", list(range(6)), [3.0, 2.8, 2.9, 2.6, 2.5, 2.4])],
    }
    assert list(curve_jumps(curves)) == ["raco · pref-000-100"]
    assert plot_losses(curves, tmp_path / "losses.png") == tmp_path / "losses.png"
    assert plot_losses({}, tmp_path / "none.png") is None
