"""The listing's grammar (lark) and its compiler to program nodes; errors give line and column."""

from __future__ import annotations

import dataclasses
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .. import ir
from .. import nonlin as nl
from ..errors import NotBPLikeError, ProgramError
from ..builder import Program
from ..ir import Bias, Data, Embed, InputLayer, LinComb, MatMul, Matrix, Node, Nonlin, Readout, Seed
from .printer import _num

#: node kinds written as calls ``name = kind[params](args)`` beyond nonlinearities: keyword →
#: constructor(node name, [params], [argument names]) used by the parser (an extension
#: registers its keyword here and a printer writing the same call in ``PRINTERS``)
CALLS: dict[str, Callable[[str, list, list], Node]] = {}

GRAMMAR = r"""
start: _line* _statement?
_line: _statement? _NL

_statement: program_decl | data_decl | param_decl | readout | assign

program_decl: "program" NAME
data_decl: "data" NAME ["[" NUMBER "]"]
param_decl: PARAM_KIND NAME option*
readout: NAME _assign READOUT [pool] "(" [expr ("," expr)*] ")" option*
assign: NAME _assign expr
_assign: "=" | ":="
pool: "[" NAME "]"

option: NAME "=" optval    -> option
      | NAME               -> flag
optval: snum | NAME

expr: [ADDOP] term (ADDOP term)*
term: factor (MULOP factor)*
?factor: NUMBER            -> number
       | "(" expr ")"      -> paren
       | operand
       | NAME TRANS "(" expr ")"  -> apply_paren
?operand: ref
        | NAME [TRANS] operand    -> apply
ref: NAME [bracket] [callargs]
bracket: "[" snum ("," snum)* "]"
callargs: "(" [expr ("," expr)*] ")"
snum: [ADDOP] NUMBER

PARAM_KIND.2: "input" | "matrix" | "bias"
READOUT.2: "readout"
TRANS: "^T" | "ᵀ"
ADDOP: "+" | "-"
MULOP: "*" | "/"
NAME: /[^\W\dᵀ][^\Wᵀ]*/
NUMBER: /(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/
COMMENT: /#[^\n]*/
_NL: /(\r?\n[\t \f]*)+/

%ignore /[\t \f]+/
%ignore COMMENT
"""

RESERVED = {"program", "data", "input", "matrix", "bias", "readout"}


class ListingError(ProgramError):
    """An error in a program listing, at ``line`` and ``column`` (1-based).

    ``kind`` says what went wrong: ``"syntax"``, ``"undefined"`` (a name not defined before
    its use), ``"duplicate"``, ``"kind"`` (a name of the wrong kind: a matrix applied to data,
    a readout used as a vector, ...), ``"arity"``, ``"nonlinearity"`` (unknown name or bad
    parameters), ``"value"`` (a bad std, lr, length, ...), ``"option"``, ``"readout"``,
    ``"not_bp_like"``, ``"unused"``, ``"unsupported"``.
    """

    def __init__(self, message: str, line: int, column: int, kind: str = "syntax",
                 source_line: str | None = None, filename: str | None = None) -> None:
        self.message, self.line, self.column, self.kind = message, line, column, kind
        self.source_line, self.filename = source_line, filename
        where = f"{filename}, " if filename else ""
        text = f"{where}line {line}, column {column}: {message}"
        if source_line is not None:
            text += f"\n    {source_line}\n    {' ' * (column - 1)}^"
        super().__init__(text)


class _Err(Exception):
    """Internal: an error at a position (converted to ListingError with the source line)."""

    def __init__(self, message: str, pos, kind: str) -> None:
        super().__init__(message)
        self.message, self.pos, self.kind = message, pos, kind


@lru_cache(maxsize=1)
def _parser():
    try:
        import lark
    except ImportError as err:  # pragma: no cover - lark is an install requirement
        raise ImportError("parsing listings needs the 'lark' package: pip install lark") from err
    return lark.Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=True)


_TOKEN_NAMES = {"NAME": "a name", "NUMBER": "a number", "_NL": "end of line", "ADDOP": "'+' or '-'",
                "MULOP": "'*' or '/'", "TRANS": "'^T'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['",
                "RSQB": "']'", "COMMA": "','", "EQUAL": "'='", "__ANON_0": "':='", "$END": "end of input",
                "READOUT": "'readout'", "PARAM_KIND": "'input', 'matrix' or 'bias'", "PROGRAM": "'program'",
                "DATA": "'data'"}


def _expected(names) -> str:
    out = sorted({_TOKEN_NAMES.get(n, n.lower()) for n in names})
    if len(out) > 6:
        out = out[:6] + ["..."]
    return ", ".join(out)


def _syntax_error(err, lines: list[str]) -> _Err:
    import lark
    if isinstance(err, lark.UnexpectedCharacters):
        ch = lines[err.line - 1][err.column - 1] if 0 < err.line <= len(lines) and \
            0 < err.column <= len(lines[err.line - 1]) else "?"
        return _Err(f"unexpected character {ch!r}", (err.line, err.column), "syntax")
    if isinstance(err, lark.UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            n = len(lines)
            return _Err(f"unexpected end of input; expected {_expected(err.expected)}",
                        (max(n, 1), len(lines[-1]) + 1 if lines else 1), "syntax")
        what = "end of line" if tok.type == "_NL" else repr(str(tok))
        line, col = tok.line, tok.column
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        m = re.match(r"\s*(" + "|".join(sorted(RESERVED)) + r")\s*:?=", src)
        if m:
            return _Err(f"{m.group(1)!r} is a reserved word and cannot name a vector", (line, m.start(1) + 1),
                        "syntax")
        hint = f" ({tok!s} is a reserved word)" if str(tok) in RESERVED else ""
        return _Err(f"unexpected {what}; expected {_expected(err.expected)}{hint}", (line, col), "syntax")
    if isinstance(err, lark.UnexpectedEOF):
        n = len(lines)
        return _Err(f"unexpected end of input; expected {_expected(err.expected)}",
                    (max(n, 1), (len(lines[-1]) + 1) if lines else 1), "syntax")
    return _Err(str(err), (1, 1), "syntax")  # pragma: no cover


# -- values of expressions ------------------------------------------------------------

@dataclasses.dataclass
class _V:
    """A value while compiling an expression.

    kind: "num" (value), "vec" (an existing node ``name``), "lin" (pending Σ c_k x_k + c0:
    ``terms``, ``const``), "pending" (a node not yet added: ``make(name) -> Node``),
    "data" (data ``name`` at ``step``).
    """

    kind: str
    pos: tuple
    value: float = 0.0
    name: str | None = None
    terms: list | None = None
    const: float = 0.0
    make: Callable | None = None
    step: int | None = None


class _Compiler:
    def __init__(self, text: str, name: str | None) -> None:
        self.lines = text.splitlines() or [""]
        self.name = name
        self.program_pos = None
        self.nodes: list[Node] = []
        self.p = Program(name or "program")
        self.where: dict[str, tuple] = {}  # node name -> position of its definition
        self.uses: dict[str, list[tuple]] = {}  # node name -> positions where it is read
        self.taken: set[str] = set(re.findall(r"[^\W\d][\w]*", text))
        self.readout_vectors: dict[str, tuple] = {}

    # -- helpers --------------------------------------------------------------------
    @staticmethod
    def pos(item) -> tuple:
        if hasattr(item, "line") and item.line is not None and not hasattr(item, "meta"):
            return (item.line, item.column)
        meta = getattr(item, "meta", None)
        if meta is not None and not getattr(meta, "empty", True):
            return (meta.line, meta.column)
        return (1, 1)

    def fresh(self, base: str) -> str:
        k = 1
        while f"{base}_{k}" in self.taken or f"{base}_{k}" in self.p:
            k += 1
        name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def add(self, node: Node, pos: tuple, kind: str = "kind") -> str:
        try:
            self.p.add(node)
        except ProgramError as err:
            raise _Err(str(err), pos, kind) from None
        self.where[node.name] = pos
        return node.name

    def lookup(self, tok, want: str | None = None):
        name = str(tok)
        if name not in self.p:
            later = name in self.taken and any(
                re.match(rf"\s*({re.escape(name)})\s*(=|:=)", ln) or
                re.match(rf"\s*(data|input|matrix|bias)\s+{re.escape(name)}\b", ln) for ln in self.lines)
            msg = f"{name!r} is not defined" + (" before it is used" if later else "")
            raise _Err(msg, self.pos(tok), "undefined")
        self.uses.setdefault(name, []).append(self.pos(tok))
        return self.p[name]

    def define_check(self, tok) -> str:
        name = str(tok)
        if name in self.p:
            line = self.where.get(name, (None,))[0]
            raise _Err(f"{name!r} is already defined" + (f" on line {line}" if line else ""), self.pos(tok),
                       "duplicate")
        if name in ("seed", "prod") or name in nl.REGISTRY or name in nl.ALIASES or name in CALLS:
            raise _Err(f"{name!r} is the name of a nonlinearity; choose another name", self.pos(tok), "duplicate")
        return name

    @staticmethod
    def number(tok) -> float:
        return float(str(tok))

    def snum(self, tree) -> float:
        sign, num = tree.children
        v = self.number(num)
        return -v if sign is not None and str(sign) == "-" else v

    # -- statements -----------------------------------------------------------------
    def run(self, tree) -> Program:
        for st in tree.children:
            if st is None:
                continue
            getattr(self, "st_" + st.data)(st)
        return self.finish()

    def st_program_decl(self, st) -> None:
        (name,) = st.children
        if self.program_pos is not None:
            raise _Err(f"a second 'program' line (the first is on line {self.program_pos[0]})", self.pos(st),
                       "duplicate")
        self.program_pos = self.pos(st)
        if self.name is None:
            self.p.name = str(name)

    def st_data_decl(self, st) -> None:
        name_tok, length = st.children
        name = self.define_check(name_tok)
        T = None
        if length is not None:
            v = self.number(length)
            if not v.is_integer() or v < 1:
                raise _Err(f"the length of data {name!r} must be a positive integer, got {length!s}",
                           self.pos(length), "value")
            T = int(v)
        self.add(Data(name, T), self.pos(name_tok))

    def options(self, opts, allowed: dict[str, str], what: str) -> dict:
        """Parse options into {key: (value, pos, value_pos)}; ``allowed`` maps key -> 'num'|'name'|'flag'."""
        out: dict = {}
        for o in opts:
            key_tok = o.children[0]
            key = str(key_tok)
            if key not in allowed:
                raise _Err(f"unknown option {key!r} for {what}; allowed: {', '.join(allowed)}", self.pos(key_tok),
                           "option")
            if key in out:
                raise _Err(f"option {key!r} given twice", self.pos(key_tok), "option")
            typ = allowed[key]
            if o.data == "flag":
                if typ != "flag":
                    raise _Err(f"option {key!r} needs a value ({key}=...)", self.pos(key_tok), "option")
                out[key] = (True, self.pos(key_tok), self.pos(key_tok))
                continue
            val_tree = o.children[1]
            inner = val_tree.children[0]
            vpos = self.pos(inner) if not hasattr(inner, "data") else self.pos(inner.children[-1])
            if hasattr(inner, "data"):  # snum
                if inner.children[0] is not None:
                    vpos = self.pos(inner.children[0])
                if typ == "name":
                    raise _Err(f"option {key!r} takes a name, got a number", vpos, "value")
                if typ == "flag":
                    v = self.snum(inner)
                    if v not in (0.0, 1.0):
                        raise _Err(f"option {key!r} is a flag: write {key}, {key}=1 or {key}=0", vpos, "value")
                    out[key] = (bool(v), self.pos(key_tok), vpos)
                    continue
                out[key] = (self.snum(inner), self.pos(key_tok), vpos)
            else:
                text = str(inner)
                if typ == "num":
                    raise _Err(f"option {key!r} must be a finite number >= 0, got {text!r}", vpos, "value")
                if typ == "flag":
                    if text.lower() not in ("true", "false", "yes", "no"):
                        raise _Err(f"option {key!r} is a flag: write {key}, {key}=true or {key}=false", vpos,
                                   "value")
                    out[key] = (text.lower() in ("true", "yes"), self.pos(key_tok), vpos)
                    continue
                out[key] = (text, self.pos(key_tok), vpos)
        for key, (v, _, vpos) in out.items():
            if allowed[key] == "num" and (not math.isfinite(v) or v < 0):
                raise _Err(f"option {key!r} must be a finite number >= 0, got {_num(v) if math.isfinite(v) else v}",
                           vpos, "value")
        return out

    def mask(self, cls: type, opts: dict, what: str) -> dict:
        """The IR keyword arguments for ``mask=p [rescale]`` (a :class:`~tpkernel.ir.Mask`)."""
        if "mask" not in opts:
            if "rescale" in opts:
                raise _Err("'rescale' needs a mask (mask=p)", opts["rescale"][1], "option")
            return {}
        p, kpos, vpos = opts["mask"]
        rescale = bool(opts.get("rescale", (False,))[0])
        if not 0 <= p < 1:
            raise _Err(f"mask={_num(p)}: the pruning probability p must be in [0, 1)", vpos, "value")
        return {"mask": ir.Mask(p=float(p), rescale=rescale)}

    def st_param_decl(self, st) -> None:
        kind_tok, name_tok, *opts = st.children
        name = self.define_check(name_tok)
        cls = {"input": InputLayer, "matrix": Matrix, "bias": Bias}[str(kind_tok)]
        allowed = {"std": "num", "lr": "num"}
        if cls is not Bias:
            allowed.update(mask="num", rescale="flag")
        o = self.options(opts, allowed, f"{kind_tok} {name}")
        kw = {"std": float(o.get("std", (1.0,))[0]), "lr": float(o.get("lr", (1.0,))[0])}
        kw.update(self.mask(cls, o, f"{kind_tok} {name}"))
        try:
            node = cls(name, **kw)
        except (ProgramError, TypeError) as err:
            raise _Err(str(err), self.pos(name_tok), "value") from None
        self.add(node, self.pos(name_tok))

    def st_assign(self, st) -> None:
        target_tok, expr = st.children
        name = self.define_check(target_tok)
        value = self.expr(expr, name)
        if value.kind == "num":
            raise _Err(f"{name} = {_num(value.value)}: a constant is not a vector of the program", value.pos, "kind")
        if value.kind == "data":
            raise _Err(f"data {value.name!r} must be embedded by an input layer first (U {value.name})", value.pos,
                       "kind")
        if value.kind == "vec":  # h = a: a LinComb with one term
            value = _V("lin", value.pos, terms=[(value.name, 1.0)])
        self.materialize(value, name)
        self.where[name] = self.pos(target_tok)

    def st_readout(self, st) -> None:
        target_tok, kw_tok, pool_tree, *rest = st.children
        name = self.define_check(target_tok)
        # rest: the arguments (None if empty) then options
        args_trees = [c for c in rest if getattr(c, "data", None) == "expr"]
        opts = [c for c in rest if getattr(c, "data", None) in ("option", "flag")]
        if not args_trees:
            raise _Err("a readout reads at least one vector: readout(x)", self.pos(kw_tok), "readout")
        pool = None
        if pool_tree is not None:
            pool = str(pool_tree.children[0])
            if pool not in ("last", "mean"):
                raise _Err(f"unknown pooling {pool!r}; use readout[last](...) or readout[mean](...)",
                           self.pos(pool_tree.children[0]), "readout")
        if pool is None and len(args_trees) > 1:
            raise _Err(f"the readout reads {len(args_trees)} vectors: pool them with readout[last](...) "
                       "or readout[mean](...)", self.pos(kw_tok), "arity")
        o = self.options(opts, {"std": "num", "lr": "num", "b_std": "num", "b_lr": "num", "vector": "name",
                                "mask": "num", "rescale": "flag"}, f"readout {name}")
        args = []
        for k, t in enumerate(args_trees):
            v = self.expr(t, name)
            args.append(self.as_vector(v, None))
        vector = None
        if "vector" in o:
            vname, _, vpos = o["vector"]
            vnode = self.lookup(_Tok(vname, vpos))
            if not isinstance(vnode, Bias):
                raise _Err(f"the readout vector {vname!r} must be an initial vector (bias), not "
                           f"{type(vnode).__name__}", vpos, "kind")
            if "std" in o:
                raise _Err("a readout with vector= takes its std from that vector; drop std=", o["std"][1], "option")
            vector = vname
            self.readout_vectors[vname] = vpos
        kw = dict(std=float(o.get("std", (1.0,))[0]), lr=float(o.get("lr", (1.0,))[0]),
                  b_std=None if "b_std" not in o else float(o["b_std"][0]), b_lr=float(o.get("b_lr", (1.0,))[0]),
                  pool=pool, vector=vector)
        kw.update(self.mask(Readout, o, f"readout {name}"))
        try:
            node = Readout(name, tuple(args), **kw)
        except ProgramError as err:
            raise _Err(str(err), self.pos(kw_tok), "readout") from None
        self.add(node, self.pos(target_tok), "readout")

    # -- expressions ------------------------------------------------------------------
    def as_vector(self, v: _V, name: str | None) -> str:
        if v.kind == "num":
            raise _Err(f"the number {_num(v.value)} is not a vector", v.pos, "kind")
        if v.kind == "data":
            raise _Err(f"data {v.name!r} must be embedded by an input layer first (U {v.name})", v.pos, "kind")
        return self.materialize(v, name)

    def materialize(self, v: _V, name: str | None) -> str:
        if v.kind == "vec":
            if name is None:
                return v.name
            v = _V("lin", v.pos, terms=[(v.name, 1.0)])
        if v.kind == "pending":
            node = v.make(name or self.fresh(self.base))
            return self.add(node, v.pos)
        if v.kind == "lin":
            if not v.terms:
                raise _Err("a constant is not a vector of the program", v.pos, "kind")
            if name is None and len(v.terms) == 1 and v.terms[0][1] == 1.0 and v.const == 0.0:
                return v.terms[0][0]
            args = tuple(t[0] for t in v.terms)
            coeffs = tuple(float(t[1]) for t in v.terms)
            return self.add(LinComb(name or self.fresh(self.base), args, coeffs, float(v.const)), v.pos)
        raise _Err("not a vector", v.pos, "kind")  # pragma: no cover

    def expr(self, tree, base: str) -> _V:
        self.base = base
        return self.e_expr(tree)

    def e(self, tree) -> _V:
        return getattr(self, "e_" + tree.data)(tree)

    def e_expr(self, tree) -> _V:
        ch = tree.children
        first_sign, items = ch[0], ch[1:]
        terms: list[tuple[int, _V]] = []
        sign = -1 if first_sign is not None and str(first_sign) == "-" else 1
        terms.append((sign, self.e(items[0])))
        for k in range(1, len(items), 2):
            terms.append((-1 if str(items[k]) == "-" else 1, self.e(items[k + 1])))
        pos = self.pos(first_sign) if first_sign is not None else terms[0][1].pos
        if len(terms) == 1 and sign == 1:
            return terms[0][1]
        lin = _V("lin", pos, terms=[], const=0.0)
        all_num = True
        for s, v in terms:
            if v.kind == "num":
                lin.const += s * v.value
                continue
            all_num = False
            self._add_to(lin, v, s)
        if all_num:
            return _V("num", pos, value=lin.const)
        return lin

    def _add_to(self, lin: _V, v: _V, scale: float) -> None:
        if v.kind == "lin":
            lin.terms.extend((n, scale * c) for n, c in v.terms)
            lin.const += scale * v.const
        else:
            lin.terms.append((self.as_vector(v, None), scale))

    def e_term(self, tree) -> _V:
        ch = tree.children
        coeff = 1.0
        vecs: list[_V] = []
        factors = [(None, ch[0])] + [(str(ch[k]), ch[k + 1]) for k in range(1, len(ch), 2)]
        for op, f in factors:
            v = self.e(f)
            if op == "/":
                if v.kind != "num":
                    raise _Err("a vector can only be divided by a number", v.pos, "kind")
                if v.value == 0:
                    raise _Err("division by zero", v.pos, "value")
                coeff /= v.value
            elif v.kind == "num":
                coeff *= v.value
            else:
                vecs.append(v)
        pos = self.pos(tree)
        if not vecs:
            return _V("num", pos, value=coeff)
        if len(vecs) == 1:
            v = vecs[0]
        else:
            names = tuple(self.as_vector(x, None) for x in vecs)
            fn = nl.product(len(names))
            v = _V("pending", pos, make=lambda nm, names=names, fn=fn: Nonlin(nm, fn, names))
        if coeff == 1.0:
            return v
        lin = _V("lin", pos, terms=[], const=0.0)
        self._add_to(lin, v, coeff)
        return lin

    def e_number(self, tree) -> _V:
        tok = tree.children[0]
        return _V("num", self.pos(tok), value=self.number(tok))

    def e_paren(self, tree) -> _V:
        return self.e(tree.children[0])

    def _matmul(self, W_tok, trans, arg: _V, pos) -> _V:
        node = self.lookup(W_tok)
        t = trans is not None
        if isinstance(node, InputLayer):
            if t:
                raise _Err(f"the input layer {node.name!r} cannot be transposed", self.pos(trans), "kind")
            if arg.kind != "data":
                raise _Err(f"the input layer {node.name!r} takes data (U xi or U x[t]); "
                           "use a matrix for vectors", arg.pos, "kind")
            data, step = arg.name, arg.step
            if (self.p[data].length is None) != (step is None):
                raise _Err(f"data {data!r} is a sequence: pick a step {data}[t]" if step is None else
                           f"data {data!r} has no steps", arg.pos, "kind")
            return _V("pending", pos, make=lambda nm: Embed(nm, node.name, data, step))
        if isinstance(node, Matrix):
            if arg.kind == "data":
                raise _Err(f"the matrix {node.name!r} is applied to data {arg.name!r}; "
                           "data needs an input layer (input U, then U " + arg.name + ")", arg.pos, "kind")
            a = self.as_vector(arg, None)
            return _V("pending", pos, make=lambda nm: MatMul(nm, node.name, a, t))
        what = self._kind_name(node)
        raise _Err(f"{node.name!r} is {what}, not a matrix or an input layer; "
                   f"it cannot be applied to a vector", self.pos(W_tok), "kind")

    @staticmethod
    def _kind_name(node) -> str:
        return {Data: "data", Bias: "an initial vector (bias)", Readout: "a readout (a scalar output)",
                Matrix: "a matrix", InputLayer: "an input layer"}.get(type(node), "a vector")

    def e_apply(self, tree) -> _V:
        ch = tree.children
        W_tok, trans, operand = ch
        return self._matmul(W_tok, trans, self.e(operand), self.pos(W_tok))

    def e_apply_paren(self, tree) -> _V:
        W_tok, trans, inner = tree.children
        return self._matmul(W_tok, trans, self.e(inner), self.pos(W_tok))

    def e_ref(self, tree) -> _V:
        name_tok, bracket, call = tree.children
        name = str(name_tok)
        pos = self.pos(name_tok)
        params = [] if bracket is None else [self.snum(c) for c in bracket.children]
        if call is None:
            node = self.lookup(name_tok)
            if isinstance(node, Data):
                if bracket is None:
                    return _V("data", pos, name=name, step=None)
                if len(params) != 1 or not float(params[0]).is_integer():
                    raise _Err(f"a step of data {name!r} is one integer: {name}[t]", self.pos(bracket), "value")
                step = int(params[0])
                if node.length is None:
                    raise _Err(f"data {name!r} is not a sequence; write {name} without a step", self.pos(bracket),
                               "kind")
                if not 0 <= step < node.length:
                    raise _Err(f"step {step} is outside 0..{node.length - 1} of data {name!r}", self.pos(bracket),
                               "value")
                return _V("data", pos, name=name, step=step)
            if bracket is not None:
                raise _Err(f"{name!r} is not a sequence (data x[T]); [...] after it is not allowed",
                           self.pos(bracket), "kind")
            if isinstance(node, (Matrix, InputLayer)):
                raise _Err(f"{name!r} is {self._kind_name(node)}; apply it: {name} x", pos, "kind")
            if isinstance(node, Readout):
                raise _Err(f"{name!r} is a readout (a scalar output), not a vector", pos, "kind")
            if isinstance(node, Data):  # pragma: no cover - handled above
                raise _Err("data", pos, "kind")
            return _V("vec", pos, name=name)
        arg_trees = [c for c in call.children if c is not None]
        cpos = self.pos(call)
        if name in self.p and isinstance(self.p[name], (Matrix, InputLayer)):
            if bracket is not None:
                raise _Err(f"{name!r} takes no [...] parameters", self.pos(bracket), "kind")
            if len(arg_trees) != 1:
                raise _Err(f"{name!r} is applied to {len(arg_trees)} arguments; it takes one", cpos, "arity")
            return self._matmul(name_tok, None, self.e(arg_trees[0]), pos)
        if name == "seed":
            if len(arg_trees) != 2:
                raise _Err("seed(readout, index) takes two arguments", cpos, "arity")
            idx = self.e(arg_trees[1])
            rname = self._plain_name(arg_trees[0])
            if rname is None or rname not in self.p or not isinstance(self.p[rname], Readout):
                raise _Err("seed(...)'s first argument must be a readout", self.pos(arg_trees[0]), "kind")
            if idx.kind != "num" or not float(idx.value).is_integer():
                raise _Err("seed(...)'s second argument is an integer index", idx.pos, "value")
            k = int(idx.value)
            self.uses.setdefault(rname, []).append(self.pos(arg_trees[0]))
            return _V("pending", pos, make=lambda nm: Seed(nm, rname, k))
        if not arg_trees:
            raise _Err(f"{name}() needs at least one argument", cpos, "arity")
        args = [self.e(t) for t in arg_trees]
        if name in CALLS and name not in self.p:
            names = [self.as_vector(a, None) for a in args]
            make = CALLS[name]
            return _V("pending", pos, make=lambda nm: make(nm, list(params), names))
        if name == "prod":
            if params:
                raise _Err("prod takes no [...] parameters", self.pos(bracket), "nonlinearity")
            fn = nl.product(len(args))
        else:
            if name in self.p and name not in nl.REGISTRY and name not in nl.ALIASES:
                node = self.p[name]
                raise _Err(f"{name!r} is {self._kind_name(node)}, not a nonlinearity or a matrix", pos, "kind")
            try:
                fn = nl.get(name, *params, arity=len(args))
            except nl.UnknownNonlinearityError:
                known = ", ".join(sorted(set(nl.REGISTRY) | set(nl.ALIASES)))
                raise _Err(f"unknown nonlinearity {name!r}; known: {known}", pos, "nonlinearity") from None
            except ProgramError as err:
                if "argument" in str(err):
                    fam = nl.REGISTRY.get(nl.ALIASES.get(name, (name,))[0])
                    k = fam.arity if fam is not None else "?"
                    raise _Err(f"{name} takes {k} argument(s), got {len(args)}", cpos, "arity") from None
                raise _Err(str(err), self.pos(bracket) if bracket is not None else pos, "nonlinearity") from None
            except (TypeError, ValueError) as err:
                raise _Err(f"bad parameters for {name}: {err}", self.pos(bracket) if bracket else pos,
                           "nonlinearity") from None
            if fn.name in ("power", "cpower") and not (float(fn.params[0]).is_integer() and fn.params[0] >= 1):
                raise _Err(f"{name}[k] needs an integer k >= 1", self.pos(bracket) if bracket else pos,
                           "nonlinearity")
            self._check_params(fn, name, params, self.pos(bracket) if bracket is not None else pos)
        names = tuple(self.as_vector(a, None) for a in args)
        return _V("pending", pos, make=lambda nm: Nonlin(nm, fn, names))

    @staticmethod
    def _check_params(fn: nl.Nonlinearity, name: str, params: list, pos: tuple) -> None:
        """A family with the wrong number of [...] parameters fails when evaluated: try it now."""
        import numpy as np
        try:
            with np.errstate(all="ignore"):
                fn(*([np.array([0.5, -0.5])] * fn.arity))
        except (ValueError, TypeError, IndexError):
            raise _Err(f"wrong number of parameters for {name}: got {len(params)} "
                       f"({', '.join(_num(x) for x in params) or 'none'})", pos, "nonlinearity") from None

    @staticmethod
    def _plain_name(tree) -> str | None:
        """The NAME of an expression that is just a name."""
        t = tree
        while getattr(t, "data", None) in ("expr", "term") and len([c for c in t.children if c is not None]) == 1:
            t = [c for c in t.children if c is not None][0]
        if getattr(t, "data", None) == "ref" and t.children[1] is None and t.children[2] is None:
            return str(t.children[0])
        return None

    # -- whole program ------------------------------------------------------------------
    def finish(self) -> Program:
        p = self.p
        for v, vpos in self.readout_vectors.items():
            others = [u for u in p.consumers(v) if not (isinstance(u, Readout) and u.vector == v)]
            if others:
                use = self.uses.get(v, [vpos])[0]
                raise _Err(f"{v!r} is the vector of a readout (vector={v}) and is also used by "
                           f"{others[0].name!r}: the program is not BP-like (a readout vector is used only by its "
                           "readout)", use, "not_bp_like")
        if not p.readouts:
            raise _Err("the program has no readout: add a line such as  f = readout(x)", (len(self.lines), 1),
                       "readout")
        try:
            p.validate()
        except NotBPLikeError as err:
            raise _Err(str(err), self._locate(str(err)), "not_bp_like") from None
        except ProgramError as err:
            msg = str(err)
            kind = "unused" if "never used" in msg else ("readout" if "readout" in msg else "kind")
            raise _Err(msg, self._locate(msg), kind) from None
        return p

    def _locate(self, message: str) -> tuple:
        for name in re.findall(r"'([^']+)'", message):
            if name in self.where:
                return self.where[name]
        return (len(self.lines), 1)


class _Tok(str):
    """A name with a position (for options whose value is a name)."""

    def __new__(cls, text: str, pos: tuple):
        obj = super().__new__(cls, text)
        obj.line, obj.column = pos
        return obj


def parse(text: str, name: str | None = None, filename: str | None = None) -> Program:
    """A :class:`~tpkernel.ir.Program` from its listing (see the module docstring).

    ``name`` overrides the ``program`` line.  Errors are :class:`ListingError` with the line
    and column (1-based) of the offending token, a ``kind`` and the source line.
    """
    import lark
    if not isinstance(text, str):
        raise TypeError(f"parse() takes the text of a listing, got {type(text).__name__}")
    lines = text.splitlines() or [""]
    try:
        try:
            tree = _parser().parse(text)
        except lark.exceptions.UnexpectedInput as err:
            raise _syntax_error(err, lines) from None
        return _Compiler(text, name).run(tree)
    except _Err as err:
        line, col = err.pos
        src = lines[line - 1] if 0 < line <= len(lines) else None
        raise ListingError(err.message, line, col, err.kind, src, filename) from None


def parse_file(path: str | Path, name: str | None = None) -> Program:
    """:func:`parse` the listing in a file (errors name the file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ProgramError(f"cannot read listing {str(path)!r}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ListingError(f"not a UTF-8 text file ({err.reason})", 1, 1, "syntax", None, str(path)) from None
    return parse(text, name=name, filename=str(path))
