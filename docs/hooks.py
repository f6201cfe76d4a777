"""MkDocs hook: pages include README sections and repository files instead of copying them, so they cannot drift.

In a page:
    <!-- readme: ## The verifier -->            that README section, its subsections included
    <!-- readme-only: ## The middleware -->     that section without its subsections
    <!-- readme-intro -->                       the README's opening, up to its first section
    <!-- include: CHANGELOG.md -->              a whole file from the repository root
    <!-- api-reference -->                      a mkdocstrings entry per name in wimse_wpt.__all__
A heading that is not found fails the build (so a renamed README section breaks `make docs`, not the page).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"^<!-- (readme|readme-only|readme-intro|include|api-reference)(?:: (.+?))? -->$", re.M)


def _lines_outside_code(text: str) -> list[tuple[str, bool]]:
    """Each line with whether it is a Markdown heading (a `#` line outside fenced code)."""
    fenced = False
    result = []
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        result.append((line, not fenced and re.match(r"#{1,6} ", line) is not None))
    return result


def readme_section(heading: str, subsections: bool = True) -> str:
    level = len(heading.split(" ", 1)[0])
    lines = _lines_outside_code((ROOT / "README.md").read_text())
    starts = [i for i, (line, is_heading) in enumerate(lines) if is_heading and line.strip() == heading]
    if len(starts) != 1:
        raise ValueError(f"README.md has {len(starts)} sections headed {heading!r}, expected 1")
    body = []
    for line, is_heading in lines[starts[0] + 1 :]:
        if is_heading:
            line_level = len(line.split(" ", 1)[0])
            if line_level <= level or not subsections:
                break
            line = "#" * (line_level - level + 1) + line[line_level:]  # ### Sub -> ## Sub on the page
        body.append(line)
    return "\n".join(body).strip() + "\n"


def readme_intro() -> str:
    lines = _lines_outside_code((ROOT / "README.md").read_text())
    body = []
    for line, is_heading in lines[1:]:  # after the title
        if is_heading:
            break
        body.append(line)
    return "\n".join(body).strip() + "\n"


def public_names() -> list[str]:
    """wimse_wpt.__all__, read from the source (no import needed)."""
    tree = ast.parse((ROOT / "src" / "wimse_wpt" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise ValueError("src/wimse_wpt/__init__.py has no __all__")


def _slug(heading: str) -> str:
    """The anchor MkDocs' toc gives a heading (lowercase, punctuation dropped, spaces to '-')."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[\s]+", "-", text).strip("-")


def _anchor_pages() -> dict[str, str]:
    """Each README heading's anchor -> the docs page that includes it (README links like
    ``[Path policy](#path-policy)`` then point at the right page)."""
    readme = _lines_outside_code((ROOT / "README.md").read_text())
    pages: dict[str, str] = {}
    for page in sorted((ROOT / "docs").glob("*.md")):
        for kind, heading in re.findall(r"^<!-- (readme|readme-only): (.+?) -->$", page.read_text(), re.M):
            level = len(heading.split(" ", 1)[0])
            inside = False
            for line, is_heading in readme:
                if not is_heading:
                    continue
                line_level = len(line.split(" ", 1)[0])
                if line.strip() == heading:
                    inside = True
                    # The included heading itself is not on the page (its body is): the page.
                    pages.setdefault(_slug(line.split(" ", 1)[1]), page.name)
                    continue
                if inside and (line_level <= level or kind == "readme-only"):
                    inside = False
                if inside:
                    pages.setdefault(_slug(line.split(" ", 1)[1]), f"{page.name}#{_slug(line.split(' ', 1)[1])}")
    return pages


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    def expand(match: re.Match[str]) -> str:
        kind, argument = match.group(1), match.group(2)
        if kind == "readme":
            return readme_section(argument)
        if kind == "readme-only":
            return readme_section(argument, subsections=False)
        if kind == "readme-intro":
            return readme_intro()
        if kind == "api-reference":
            return "\n".join(f"::: wimse_wpt.{name}\n" for name in sorted(public_names(), key=str.lower))
        text = (ROOT / argument).read_text()
        return text.split("\n", 1)[1] if text.startswith("# ") else text  # the page has its own title

    expanded = DIRECTIVE.sub(expand, markdown)
    here = kwargs["page"].file.src_uri if "page" in kwargs else ""
    anchors = _anchor_pages()

    def relink(match: re.Match[str]) -> str:
        target = anchors.get(match.group(1))
        if target is None or target.partition("#")[0] == here:
            return match.group(0)
        return f"]({target})"

    expanded = re.sub(r"\]\(#([a-z0-9-]+)\)", relink, expanded)
    # The README's repository links that have a page here.
    expanded = expanded.replace("](SECURITY.md)", "](security.md#reporting-a-vulnerability)")
    leftover = re.search(r"^<!-- (readme|include|api-reference).*$", expanded, re.M)
    if leftover:  # a mistyped directive would otherwise vanish as an HTML comment
        raise ValueError(f"unrecognised include directive: {leftover.group(0)}")
    return expanded
