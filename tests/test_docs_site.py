"""The documentation site builds offline with warnings as errors, and its pages work in a
browser: every guide page in the navigation, every picture loaded, search answering."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vaekit

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# As `make docs` runs it: any warning fails the build (-E: read every page afresh).
SPHINX = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built as `make docs` builds it (-W: any warning fails), into a fresh folder."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [*SPHINX, str(DOCS), str(out), "-d", str(out / ".doctrees")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_every_guide_page_is_in_the_navigation(site):
    index = (site / "index.html").read_text()
    guide = sorted(p.stem for p in (DOCS / "guide").glob("*.md"))
    assert len(guide) >= 10
    for name in [*(f"guide/{g}" for g in guide), "api", "gallery", "benchmarks", "architecture"]:
        assert f'href="{name}.html"' in index, name


def test_the_api_reference_documents_every_public_name(site):
    api = (site / "api.html").read_text()
    public = [name for name in vaekit.__all__ if not name.startswith("_")]
    missing = [name for name in public if f'id="vaekit.{name}"' not in api]
    assert missing == []
    # the docstrings themselves made it, not only the names
    assert "nats" in re.sub(r"<[^>]+>", "", api)


def test_the_gallery_shows_every_picture_in_docs(site):
    pictures = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.png"))
    gallery = (DOCS / "gallery.md").read_text()
    assert [p for p in pictures if f"]({p})" not in gallery] == []
    built = {p.name for p in (site / "_images").iterdir()}
    assert {Path(p).name for p in pictures} <= built


def test_the_benchmarks_page_shows_the_results_summary(site):
    summary = (REPO / "benchmarks" / "RESULTS.md").read_text()
    rows = re.search(r"<!-- summary-start -->(.*)<!-- summary-end -->", summary, re.S)
    cells = [line.split(" | ")[0] for line in rows.group(1).splitlines() if "|" in line]
    claims = [re.sub(r"^\| \[?(.*?)(\]\(.*\))?$", r"\1", cell) for cell in cells]
    page = html.unescape(re.sub(r"<[^>]+>", "", (site / "benchmarks.html").read_text()))
    page = page.replace("\u2019", "'")  # Sphinx's typographic apostrophe
    assert len(claims) >= 7  # header, rule and at least five claims
    for claim in claims[2:]:
        assert claim.replace("\\|", "|") in page, claim
    for note in (REPO / "benchmarks" / "notes").glob("*.md"):
        assert (site / "notes" / f"{note.stem}.html").is_file(), note.name


def test_the_pages_work_in_chromium(site, tmp_path):
    """Open the built site in headless Chromium: the navigation lists the guide, every
    picture of the gallery has loaded, code blocks are highlighted, search finds a word."""
    from chromium import Chromium, ChromiumError, find_chromium

    if find_chromium() is None:
        pytest.skip("Chromium is not installed (scripts/ensure-chromium.sh installs it)")
    try:
        browser = Chromium(width=1280, height=900)
    except ChromiumError as exc:
        pytest.skip(f"Chromium does not start here: {exc}")
    with browser:
        browser.open((site / "index.html").as_uri())
        nav = browser.evaluate(
            "[...document.querySelectorAll('.sidebar-tree a')].map(a => a.textContent.trim())"
        )
        assert "Quickstarts" in nav and "Python API" in nav and "Gallery" in nav
        browser.open((site / "gallery.html").as_uri())
        images = browser.evaluate(
            "[...document.querySelectorAll('article img')].map(i => [i.src, i.naturalWidth])"
        )
        assert len(images) == len(list(DOCS.rglob("*.png")))
        assert [src for src, width in images if width == 0] == []
        browser.open((site / "guide" / "quickstart.html").as_uri())
        spans = browser.evaluate("document.querySelectorAll('div.highlight pre span').length")
        assert spans > 10  # Pygments coloured the shell blocks
        browser.open((site / "search.html").as_uri() + "?q=importance")
        browser.evaluate(
            "new Promise(done => { const t = setInterval(() => { if (document.querySelector("
            "'#search-results li')) { clearInterval(t); done(); } }, 100); })"
        )
        hits = browser.evaluate(
            "[...document.querySelectorAll('#search-results li a')].map(a => a.href)"
        )
        assert any("guide/evaluation.html" in href for href in hits)


def test_the_readme_and_results_links_point_at_files():
    """The README and benchmarks/RESULTS.md are read on a forge, outside the site: every
    relative link in them names a file that exists (the site's own links are checked by -W)."""
    for page in (REPO / "README.md", REPO / "benchmarks" / "RESULTS.md"):
        links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
        local = [link for link in links if "://" not in link]
        assert len(local) >= 10, page.name
        assert [link for link in local if not (page.parent / link).exists()] == []


def test_the_readme_is_a_short_page_that_starts_with_the_two_set_up_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250  # the long prose lives in the guide
    first = re.search(r"```sh\n(.*?)```", readme, re.S).group(1).splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["make demo", "make test"]


def test_every_preset_says_what_it_is_for_in_at_most_five_lines():
    """The presets' histories live in benchmarks/notes/presets.md, not in their comments."""
    presets = sorted((REPO / "src" / "vaekit" / "configs").glob("*.toml"))
    assert len(presets) >= 10
    for preset in presets:
        lines = preset.read_text().splitlines()
        comment = 0
        while comment < len(lines) and lines[comment].startswith("#"):
            comment += 1
        assert 1 <= comment <= 5, preset.name
