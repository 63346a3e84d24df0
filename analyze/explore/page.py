"""One self-contained HTML page: the template, its CSS and code (package data of
``analyze.explore``: ``explorer_metrics.js``, ``explorer_rows.js``, ``explorer.js``), the Vega /
Vega-Lite / vega-embed JavaScript, the chart specifications and the packed data, all inline.

The JavaScript is the bundle vl-convert-python ships (what altair inlines for
``chart.save(..., inline=True)``), for the Vega-Lite version of the installed altair. The page's
Content-Security-Policy (``default-src 'none'``) forbids every request, so opening it can reach
nothing, even by mistake.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import os
import re
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from analyze.explore.payload import FALL_MIN, PAGE_BOOT, pack, page_payload
from analyze.explore.sources import Source, unique_names
from analyze.explore.specs import all_specs
from analyze.interventions.svd import user_cache_dir


@functools.cache
def vega_bundle() -> tuple[str, dict[str, str]]:
    """(JavaScript defining ``vegaEmbed``, ``vega`` and ``vegaLite``; their versions). The
    Vega-Lite version is the one altair writes specifications for. Bundling takes seconds, so
    the bundle is kept in the user cache (``$LAYERCAL_CACHE_DIR/derived``), one file per
    vl-convert and Vega-Lite version."""
    import altair as alt
    import vl_convert as vlc

    major, minor = alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]
    version = f"v{major}_{minor}"
    vlc_version = metadata.version("vl-convert-python")
    if f"{major}.{minor}" not in vlc.get_vegalite_versions():
        raise RuntimeError(
            f"vl-convert-python {vlc_version} has no Vega-Lite {major}.{minor} (altair "
            f"{alt.__version__} writes it): pip install -U vl-convert-python"
        )
    versions = {"vega": vlc.get_vega_version(), "vegalite": alt.SCHEMA_VERSION.lstrip("v")}
    cached = user_cache_dir() / f"vega-embed-{vlc_version}-{version}.js"
    if cached.is_file():
        return cached.read_text(encoding="utf-8"), versions
    js = vlc.javascript_bundle(vl_version=version)  # type: ignore[call-arg]  # snippet: default
    js = js.replace("</script", "<\\/script")
    try:  # a cache that cannot be written only costs the bundling next time
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        tmp.write_text(js, encoding="utf-8")
        tmp.replace(cached)
    except OSError:
        pass
    return js, versions


# the page's code, joined in this order inside one function scope (explorer.html)
APP = ("explorer_metrics.js", "explorer_rows.js", "explorer.js")


def _asset(name: str) -> str:
    return resources.files("analyze.explore").joinpath(name).read_text(encoding="utf-8")


def _json_in_html(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def _version() -> str:
    try:
        return metadata.version("layercal")
    except metadata.PackageNotFoundError:
        return "dev"


def render_page(sources: list[Source], title: str | None = None) -> str:
    """The HTML of the explorer of ``sources`` (one or more stores, overlaid)."""
    if not sources:
        raise ValueError("an explorer needs at least one store")
    doc, arrays = page_payload(unique_names(sources))
    names = [s["name"] for s in doc["stores"]]
    metrics = list(dict.fromkeys(m for s in doc["stores"] for m in s["depth_metrics"]))
    js, versions = vega_bundle()
    title = title or (
        f"Explorer: {names[0]}" if len(names) == 1 else f"Explorer: {len(names)} stores"
    )
    n_boot = sorted({str(s["n_boot"]) for s in doc["stores"]})
    fill = {
        "TITLE": _html_text(title),
        "CSS": _asset("explorer.css"),
        "VEGA": js,
        "VEGA_VERSION": versions["vega"],
        "VEGALITE_VERSION": versions["vegalite"],
        "VERSION": _version(),
        "STAMP": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "NBOOT": "/".join(n_boot),
        "PAGE_BOOT": str(PAGE_BOOT),
        "FALL_MIN": f"{FALL_MIN:g}",
        "SPECS": _json_in_html(all_specs(names, metrics)),
        "DATA": base64.b64encode(pack(doc, arrays)).decode("ascii"),
        "APP": "\n".join(_asset(name) for name in APP),
    }
    # one pass: what is filled in (the bundle holds "@@iterator") is never searched again
    return re.sub(r"@@([A-Z_]+)@@", lambda m: fill[m.group(1)], _asset("explorer.html"))


def _html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_explorer(sources: list[Source], out: str | Path, title: str | None = None) -> Path:
    """Write the explorer page of ``sources`` to ``out`` (through a temporary file, so an
    existing page is replaced whole or not at all); returns the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_page(sources, title), encoding="utf-8")
    tmp.replace(path)
    return path
