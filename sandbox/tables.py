"""Plain-text tables for the terminal, aligned by display width (Chinese text included).

>>> print(render(["城市", "n"], [["济南", "12"], ["qingdao", "7"]]))
 城市       n
──────────────
 济南      12
 qingdao    7
"""

from __future__ import annotations

import io
from collections.abc import Sequence

#: Widest table rendered, in terminal cells; columns never stretch beyond their content.
MAX_WIDTH = 240


def render(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None
) -> str:
    """The rows under the header, one line each, as plain text (no colour, no markup).

    ``right`` says which columns are right-aligned (by default those whose cells all look
    like numbers). Cell text is shown as is: brackets are not read as markup.
    """
    from rich import box  # here, not at import: a --json command never loads rich
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if right is None:
        right = [bool(rows) and all(_numeric(r[i]) for r in rows) for i in range(len(header))]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=True, highlight=False)
    for name, is_right in zip(header, right, strict=True):
        table.add_column(Text(name), justify="right" if is_right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    out = io.StringIO()
    Console(file=out, width=MAX_WIDTH, color_system=None, highlight=False).print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines() if line.strip())


def _numeric(text: str) -> bool:
    head = text.split(" [", 1)[0].replace(",", "")
    try:
        float(head)
    except ValueError:
        return False
    return True
