"""Open every page of the built book in headless Chromium, offline, and check its figures.

Usage: python scripts/check_book.py [HTML_DIR] [--chromium /usr/bin/chromium]

For each HTML page the check fails when:
* a Plotly figure ``div`` did not draw (no ``svg.main-svg`` inside it);
* the browser console logged an error or the page threw an exception;
* the page requested anything but local files (a CDN script, a font, ...);
* a notebook page has no figure at all.

The browser context is offline and every non-``file://`` request is aborted,
so a figure that needs the network fails here the way it would for a reader
without one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

SKIPPED = {"genindex.html", "search.html", "py-modindex.html"}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Plotly draws after the page's load event; wait this long for every figure.
DRAW_TIMEOUT_MS = 15_000
# Jupyter Book writes the root index.html as a bare meta-refresh redirect.
REDIRECT = re.compile(r'<meta\s+http-equiv="Refresh"\s+content="\d+;\s*url=([^"]+)"', re.IGNORECASE)


def pages(html_dir: Path) -> list[Path]:
    return sorted(
        p for p in html_dir.rglob("*.html")
        if p.name not in SKIPPED and not {"_static", "_sources", "_images"} & set(p.relative_to(html_dir).parts)
    )


def redirect_target(page_path: Path) -> str | None:
    """Return the URL a meta-refresh page redirects to, or None for a normal page."""
    match = REDIRECT.search(page_path.read_text(encoding="utf-8", errors="replace")[:2000])
    return match.group(1) if match else None


def check_redirect(page_path: Path, target: str) -> list[str]:
    """Return the problems of a redirect page: none when its target file exists in the book.

    Opening the page in the browser would race the navigation against the
    figure count, so the target is checked on disk instead.
    """
    destination = (page_path.parent / target.split("#")[0]).resolve()
    if not destination.is_file():
        return [f"redirects to {target}, which is not in the built book"]
    return []


def check_page(context, page_path: Path, html_dir: Path) -> tuple[int, int, list[str]]:
    """Load one page; return (figures, figures drawn, problems)."""
    problems: list[str] = []
    page = context.new_page()
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "requestfailed",
        lambda request: problems.append(f"request failed: {request.url} ({request.failure})")
        if request.url.startswith("file://") else None,
    )
    page.goto(page_path.as_uri(), wait_until="load")
    figures = page.locator("div.plotly-graph-div").count()
    if figures:
        try:
            page.wait_for_function(
                "() => [...document.querySelectorAll('div.plotly-graph-div')].every(d => d.querySelector('svg.main-svg'))",
                timeout=DRAW_TIMEOUT_MS,
            )
        except Exception:  # a timeout: count what did draw below
            pass
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('div.plotly-graph-div')].filter(d => d.querySelector('svg.main-svg')).length"
    )
    page.close()
    relative = page_path.relative_to(html_dir)
    if drawn < figures:
        problems.append(f"{figures - drawn} of {figures} Plotly figures did not draw")
    if relative.parts[0] == "notebooks" and figures == 0:
        problems.append("notebook page has no figure")
    return figures, drawn, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", nargs="?", default="_build/html", type=Path)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()

    html_dir = args.html_dir.resolve()
    if not (html_dir / "index.html").is_file():
        print(f"no built book at {html_dir} (index.html missing); run `make book` first", file=sys.stderr)
        return 2
    if not Path(args.chromium).is_file():
        print(f"Chromium not found at {args.chromium}; install Debian's chromium package (apt-get install chromium)", file=sys.stderr)
        return 2

    failures, total_figures = 0, 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
        context = browser.new_context(offline=True)
        blocked: list[str] = []

        def route(request_route):
            if request_route.request.url.startswith("file://"):
                request_route.continue_()
            else:
                blocked.append(request_route.request.url)
                request_route.abort()

        context.route("**/*", route)
        for page_path in pages(html_dir):
            blocked.clear()
            target = redirect_target(page_path)
            if target is not None:
                problems = check_redirect(page_path, target)
                status = "ok" if not problems else "FAIL"
                print(f"{status:4} {page_path.relative_to(html_dir)}: redirects to {target}")
                for problem in problems:
                    print(f"     {problem}")
                failures += bool(problems)
                continue
            figures, drawn, problems = check_page(context, page_path, html_dir)
            problems += [f"network request blocked: {url}" for url in blocked]
            total_figures += figures
            status = "ok" if not problems else "FAIL"
            print(f"{status:4} {page_path.relative_to(html_dir)}: {drawn}/{figures} figures drawn")
            for problem in problems:
                print(f"     {problem}")
            failures += bool(problems)
        browser.close()

    print(f"{len(pages(html_dir))} pages, {total_figures} figures, {failures} pages with problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
