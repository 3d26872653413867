"""The one writer of vaekit's HTML pages: a run's report, ``vaekit em`` and ``vaekit compare``.

A :class:`Page` collects blocks (headings, paragraphs, tables, figures, collapsed sections)
and renders one self-contained file: the stylesheet is inline, PNGs are embedded as base64,
and there is no script and no network reference, so the page opens anywhere, offline.
Every text passed in is escaped here; only :meth:`Page.raw` takes markup as it is.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from vaekit.rundir import atomic_write_bytes

GENERATOR = "vaekit.report.page"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1100px; padding: 0 1.2em; color: #222; line-height: 1.45; }
h1 { font-size: 1.55em; margin-bottom: .2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
p.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: .92em; }
table.wide { width: 100%; }
th, td { border: 1px solid #ccc; padding: .35em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.value { font-family: ui-monospace, monospace; white-space: nowrap; }
.headline { display: grid; grid-template-columns: 1fr 1fr 1.35fr; gap: .8em; margin: 1em 0 .4em; }
.card { border: 1px solid #d8d8d8; border-radius: 6px; padding: .6em .9em; background: #fafafa; }
.card .label { font-size: .8em; color: #666; text-transform: uppercase; letter-spacing: .04em; }
.card .number { font-size: 1.6em; font-family: ui-monospace, monospace; white-space: nowrap; }
.card .unit { font-size: .88em; color: #444; }
.card.main { border-color: #7aa6d6; background: #f1f6fc; }
.card.missing .number { font-size: 1.1em; font-family: inherit; white-space: normal;
                        color: #8a4b00; }
.card dl { display: grid; grid-template-columns: auto 1fr; gap: .15em .8em; margin: .3em 0 0;
           font-size: .92em; }
.card dt { color: #666; } .card dd { margin: 0; }
@media (max-width: 800px) { .headline { grid-template-columns: 1fr; } }
figure { margin: 1.4em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e2e2e2; }
figure img.pixels { image-rendering: pixelated; }
figcaption { color: #555; font-size: .92em; max-width: 60em; }
.gallery { display: flex; flex-wrap: wrap; gap: 0 1.6em; align-items: flex-start; }
.gallery figure { display: table; margin: 1em 0; }  /* as wide as its picture */
.gallery figcaption { display: table-caption; caption-side: bottom; padding-top: .3em; }
details { margin: 1.2em 0; border: 1px solid #ddd; border-radius: 6px; padding: .4em .8em; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
"""


def _attributes(**attrs: str | None) -> str:
    """`` id='...' class='...'`` for the attributes given (None ones left out), escaped."""
    return "".join(
        f" {name.rstrip('_')}='{html.escape(value, quote=True)}'"
        for name, value in attrs.items()
        if value is not None
    )


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes (checked to be a PNG)."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("an embedded figure must be a PNG")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(png: bytes, caption: str, name: str, id: str | None, pixels: bool) -> str:
    return (
        f"<figure{_attributes(id=id)}><img{_attributes(class_='pixels' if pixels else None)}"
        f" alt='{html.escape(name, quote=True)}' src='{png_data_uri(png)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


class Page:
    """One HTML page, built block by block, in reading order."""

    def __init__(self, title: str, lead: str | None = None) -> None:
        self.title = title
        self.blocks: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        if lead:
            self.blocks.append(f"<p class='lead'>{html.escape(lead)}</p>")

    def heading(self, text: str, id: str | None = None) -> Page:
        self.blocks.append(f"<h2{_attributes(id=id)}>{html.escape(text)}</h2>")
        return self

    def paragraph(self, text: str, id: str | None = None) -> Page:
        self.blocks.append(f"<p{_attributes(id=id)}>{html.escape(text)}</p>")
        return self

    def raw(self, markup: str) -> Page:
        """Append markup as it is (the caller escapes what it interpolates)."""
        self.blocks.append(markup)
        return self

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[str]],
        id: str | None = None,
        value_columns: Sequence[int] = (),
        wide: bool = True,
    ) -> Page:
        """A table of text cells; the ``value_columns`` are set in a monospace font."""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td{_attributes(class_='value' if i in value_columns else None)}>"
                f"{html.escape(cell)}</td>"
                for i, cell in enumerate(row)
            )
            + "</tr>"
            for row in rows
        )
        self.blocks.append(
            f"<table{_attributes(id=id, class_='wide' if wide else None)}><thead><tr>{head}"
            f"</tr></thead><tbody>{body}</tbody></table>"
        )
        return self

    def figure(
        self, png: bytes, caption: str, name: str, id: str | None = None, pixels: bool = False
    ) -> Page:
        """An embedded PNG with its caption. ``pixels`` marks a picture of image pixels: the
        browser keeps them sharp (nearest neighbour) if it has to scale the picture."""
        self.blocks.append(_figure(png, caption, name, id, pixels))
        return self

    def gallery(self, figures: Sequence[tuple[bytes, str, str, str | None, bool]]) -> Page:
        """Figures ``(png, caption, name, id, pixels)`` side by side where the width allows,
        each caption as wide as its picture."""
        inner = "".join(_figure(*figure) for figure in figures)
        self.blocks.append(f"<div class='gallery'>{inner}</div>")
        return self

    def details(self, summary: str, text: str, id: str | None = None) -> Page:
        """A collapsed section: ``summary`` shows, the preformatted ``text`` opens on a click."""
        self.blocks.append(
            f"<details{_attributes(id=id)}><summary>{html.escape(summary)}</summary>"
            f"<pre>{html.escape(text)}</pre></details>"
        )
        return self

    def render(self) -> str:
        """The whole document as one string."""
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='generator' content='{GENERATOR}'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(self.blocks)
            + "\n</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Write the page atomically, with the mode every vaekit file gets (0666 minus the
        umask)."""
        path = Path(path)
        atomic_write_bytes(path, self.render().encode("utf-8"))
        return path


# A figure of a sectioned page: (file name, PNG bytes, caption).
Figure = tuple[str, bytes, str]


def write_page(
    out_dir: Path, title: str, intro: list[str], sections: list[tuple[str, list[str], list[Figure]]]
) -> Path:
    """Write ``out_dir/report.html`` (self-contained, by :class:`Page`) and
    each figure as ``out_dir/NAME``."""
    page = Page(title)
    for paragraph in intro:
        page.paragraph(paragraph)
    for heading, paragraphs, figures in sections:
        page.heading(heading)
        for paragraph in paragraphs:
            page.paragraph(paragraph)
        for name, png, caption in figures:
            atomic_write_bytes(out_dir / name, png)
            page.figure(png, caption, name)
    return page.write(out_dir / "report.html")
