"""The README's quick start, copied out of the README and run against a real server."""

from __future__ import annotations

import contextlib
import io
import re

from .servers import ROOT, free_port, serve


def quick_start_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_quick_start_runs() -> None:
    server_block, client_block = quick_start_blocks()
    port = str(free_port())
    namespace: dict[str, object] = {}
    exec(server_block.replace("8000", port), namespace)  # noqa: S102 - the README's own code
    with serve(namespace["app"], port=int(port)):
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            exec(client_block.replace("8000", port), namespace)  # noqa: S102
    assert output.getvalue().strip() == "{'hello': 'wimse://example.com/my-client'}"


def test_readme_documents_every_problem_code_with_its_status() -> None:
    from wimse_wpt.problems import CATALOG, Kind

    text = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \| ([0-9/]+) \|", text, re.M))
    expected = {
        Kind.CREDENTIAL: "400/401",
        Kind.FORBIDDEN: "403",
        Kind.UNAVAILABLE: "503",
        Kind.REQUEST: "400",
        Kind.LIMITED: "429",
        Kind.INTERNAL: "500",
    }
    assert rows == {code: expected[kind] for code, (kind, _title) in CATALOG.items()}


def test_readme_documents_every_public_name() -> None:
    import wimse_wpt

    text = (ROOT / "README.md").read_text()
    assert [name for name in wimse_wpt.__all__ if f"`{name}" not in text] == []
