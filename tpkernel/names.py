r"""Typesetting names, in one place: node and parameter names as the papers write them.

Three renderings, one per reader: :func:`plain_name` (the formulas' str: ``xi`` → ξ),
:func:`latex_name` (the formulas' LaTeX: ``h2`` → ``h_{2}``), :func:`pretty` (the listing's
algorithm style, with the papers' layer superscripts: ``x1`` → x¹ / ``x^{1}``); the drawing's
HTML labels (:mod:`tpkernel.draw`) use :data:`GREEK`, :data:`SUP`, :data:`SUB` and
:data:`DRAW_NAME` from here.
"""

from __future__ import annotations

import re

from sympy.printing.latex import greek_letters_set

#: Greek letter names → (unicode, LaTeX)
GREEK = {"xi": ("ξ", r"\xi"), "alpha": ("α", r"\alpha"), "beta": ("β", r"\beta"), "gamma": ("γ", r"\gamma"),
         "delta": ("δ", r"\delta"), "theta": ("θ", r"\theta"), "phi": ("φ", r"\phi"), "psi": ("ψ", r"\psi"),
         "zeta": ("ζ", r"\zeta"), "eta": ("η", r"\eta"), "mu": ("μ", r"\mu"), "nu": ("ν", r"\nu"),
         "sigma": ("σ", r"\sigma"), "omega": ("ω", r"\omega"), "chi": ("χ", r"\chi"), "tau": ("τ", r"\tau"),
         "lambda": ("λ", r"\lambda"), "rho": ("ρ", r"\rho"), "epsilon": ("ε", r"\epsilon"),
         "kappa": ("κ", r"\kappa")}
UNICODE_GREEK = {k: v[0] for k, v in GREEK.items()}
SUP = str.maketrans("0123456789+-()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁽⁾")
SUB = str.maketrans("0123456789+-()", "₀₁₂₃₄₅₆₇₈₉₊₋₍₎")
#: listing names: stem, layer digits, suffix (``s1_2``)
LISTING_NAME = re.compile(r"^([A-Za-z]+?)(\d*)((?:_\w+)?)$")
#: drawing names: a letter, then a letter (W_z) or an index (W², W¹ᵃ)
DRAW_NAME = re.compile(r"^([A-Za-z])(?:([A-Za-z])|(\d+[A-Za-z]*))?$")
#: the Greek letters of the formulas' str form
_PLAIN = ("xi", "sigma", "eta", "theta", "phi", "psi", "alpha", "beta", "gamma", "delta", "mu", "nu", "tau", "zeta")


def plain_name(name: str) -> str:
    """A name in the formulas' str form: Greek letter names as letters (``xi`` → ξ)."""
    return UNICODE_GREEK[name] if name in _PLAIN else name


def latex_name(name: str) -> str:
    """A node or parameter name in LaTeX: h2 → h_{2}, Uz → U_{z}, xi → \\xi, out → \\mathrm{out}."""
    if name in greek_letters_set:
        return "\\" + name
    if re.fullmatch(r"[A-Za-z]", name):
        return name
    m = re.fullmatch(r"([A-Za-z]+)(\d+)", name)
    if m and m.group(1) in greek_letters_set:  # sigma2 → \sigma_{2}
        return f"\\{m.group(1)}_{{{m.group(2)}}}"
    m = re.fullmatch(r"([A-Za-z])([A-Za-z0-9]|[A-Za-z0-9]*\d[A-Za-z0-9]*)", name)  # h10, Uz, W1a
    if m:
        return f"{m.group(1)}_{{{m.group(2)}}}"
    m = re.fullmatch(r"([A-Za-z])(\d+)_(\d+)", name)  # s1_1 (listing names) → s_{1.1}
    if m:
        return f"{m.group(1)}_{{{m.group(2)}.{m.group(3)}}}"
    m = re.fullmatch(r"([A-Za-z])_([A-Za-z0-9]+)", name)  # h_3 → h_{3}
    if m:
        return f"{m.group(1)}_{{{m.group(2)}}}"
    return r"\mathrm{" + name.replace("_", r"\_") + "}"


def pretty(name: str, style: str) -> str:
    """x1 → x¹ / x^{1}, xi → ξ / \\xi, s1_2 → s¹₂ / s^{1}_{2}, W2 → W² (the papers' layer superscripts)."""
    m = LISTING_NAME.match(name)
    if not m:
        return name if style == "unicode" else r"\mathit{%s}" % name.replace("_", r"\_")
    stem, digits, rest = m.groups()
    rest = rest[1:] if rest else ""
    listing_greek = stem in GREEK and stem not in ("tau", "lambda", "rho", "epsilon", "kappa")
    if style == "unicode":
        stem = GREEK[stem][0] if listing_greek else stem
        sub = rest.translate(SUB) if rest.isdigit() else (f"_{rest}" if rest else "")
        return stem + digits.translate(SUP) + sub
    if listing_greek:
        stem = GREEK[stem][1]
    elif len(stem) == 2 and not rest and not digits:  # Wz, bh: W_z, b_h as in the papers
        return f"{stem[0]}_{{{stem[1]}}}"
    elif len(stem) > 1:
        stem = r"\mathrm{%s}" % stem
    return stem + (f"^{{{digits}}}" if digits else "") + (f"_{{{rest}}}" if rest else "")
