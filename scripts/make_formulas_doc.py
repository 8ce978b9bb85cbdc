"""Write docs/formulas.md: the printed formulas of every built-in example.

    python scripts/make_formulas_doc.py

(tests/test_symbolic.py checks that the page is up to date.)
"""

from pathlib import Path

from tpkernel.symbolic import examples_markdown

if __name__ == "__main__":
    page = Path(__file__).resolve().parent.parent / "docs" / "formulas.md"
    page.write_text(examples_markdown())
    print(f"wrote {page}")
