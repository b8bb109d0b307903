"""The Studio's views: pure functions of a circuit (and view options) to HTML text.

Each returns HTML that explains the problem instead of raising, so a view that cannot be
drawn (no outputs yet, unbound sizes) says why while the other views stay live. An error that
is not an NcdError (a bug in a view) is shown as an internal error, and the editor goes on.
"""

from __future__ import annotations

import html
import itertools
import re
from dataclasses import replace

from ncd.circuits.errors import NcdError, Problem
from ncd.circuits.limits import MAX_SIZE

_SIZE_ITEM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([0-9]{1,13})\s*$")


def parse_sizes(text: str) -> dict[str, int]:
    """`"B=2, T=128"` -> {"B": 2, "T": 128}; raises SizeError saying which item is wrong.
    Each size is at most MAX_SIZE: a size is a number in a formula here, never an
    allocation (nothing in the Studio makes a model's parameters)."""
    from ncd.circuits.errors import SizeError

    out: dict[str, int] = {}
    for item in filter(str.strip, text.split(",")):
        m = _SIZE_ITEM.match(item)
        if not m:
            raise SizeError(
                f"sizes: cannot read {item.strip()!r} (expected NAME=INTEGER, e.g. T=128)"
            )
        value = int(m.group(2))
        if not 1 <= value <= MAX_SIZE:
            raise SizeError(
                f"sizes: {m.group(1)}={value} is out of range (expected 1 to 2**40, limit MAX_SIZE)"
            )
        out[m.group(1)] = value
    return out


def problems_of(err: BaseException) -> list[Problem]:
    """Every located problem an error carries (ValidationError, FormError), else one."""
    found = getattr(err, "problems", None)
    if found:
        return list(found)
    where = "internal error" if not isinstance(err, NcdError) else "error"
    return [Problem(where, str(err) or type(err).__name__)]


def messages_html(problems: list[Problem], note: str = "", ok: bool = True) -> str:
    """The messages panel: a status line, then one line per problem (place in bold)."""
    colour = "#2e7d32" if ok else "#c62828"
    parts = [f'<div style="color:{colour}">{html.escape(note)}</div>'] if note else []
    if problems:
        items = "".join(
            f"<li><b>{html.escape(p.where)}</b>: {html.escape(str(p)[len(p.where) + 2 :])}</li>"
            for p in problems
        )
        parts.append(f'<ul class="ncd-problems" style="margin:2px 0">{items}</ul>')
    return "".join(parts)


def _error(title: str, err: BaseException) -> str:
    lines = "<br>".join(html.escape(str(p)) for p in problems_of(err))
    return f'<div style="color:#c62828"><b>{html.escape(title)}</b><br>{lines}</div>'


def diagram_html(circuit, theme: str = "paper") -> str:
    """The circuit drawn by ncd.render (SVG inline)."""
    from ncd.circuits.draw import render

    try:
        svg = render(circuit, theme=theme)
    except Exception as e:  # noqa: BLE001 - a view that fails says why; the others stay live
        return _error("cannot draw the circuit", e)
    return f'<div class="ncd-diagram" style="overflow:auto">{_fit_width(svg)}</div>'


def diagram_svg(
    circuit, theme: str = "paper", collapse=(), quick: bool = True, checked=None
) -> str:
    """The circuit drawn for the editor's canvas: ncd.render's scene, DOT and ids laid out in
    one pass (`quick`: draw.layout_svg, which keeps the last drawings; otherwise render
    itself, the figure exported). Outputs named `…x` (loose ends, see `drawable`) are drawn
    next to their box, not in the last column. Node ids are namespaced by role, as the
    renderer writes them (circuits/ids.py: `output:y` beside `box:y`). `checked`: the
    check of `circuit` where the caller has it. Raises what render raises."""
    from ncd.circuits.draw import layout_svg, render

    if not quick:
        return render(circuit, theme=theme, collapse=sorted(collapse))
    loose = [o.name for o in circuit.outputs if o.name.startswith(DANGLING)]
    return layout_svg(circuit, theme, sorted(collapse), loose=loose, checked=checked)


def _fit_width(svg: str) -> str:
    """Let a wide diagram shrink to the panel (down from its natural size, never up): seen in
    JupyterLab, the transformer block was cut off at the panel's right edge."""
    m = re.search(r'<svg width="([0-9.]+)pt" height="([0-9.]+)pt"', svg)
    if not m:
        return svg
    w = m.group(1)
    return svg.replace(m.group(0), f'<svg width="100%" style="max-width:{w}pt;height:auto"', 1)


def cost_html(circuit, sizes: dict[str, int]) -> str:
    """The cost model's table (ncd.analyse) at the circuit's sizes updated by `sizes`."""
    from ncd.compiler.cost import analyse

    try:
        return analyse(circuit, sizes or None)._repr_html_()
    except Exception as e:  # noqa: BLE001 - a view that fails says why; the others stay live
        return _error("no cost report", e)


def code_html(circuit, sizes: dict[str, int] | None = None) -> str:
    """The standalone PyTorch source the compiler writes (default sizes updated by `sizes`)."""
    from ncd.compiler import to_source

    try:
        code = to_source(circuit, sizes or None)
    except Exception as e:  # noqa: BLE001 - a view that fails says why; the others stay live
        return _error("no code", e)
    return f'<pre class="ncd-code" style="font-size:11px">{html.escape(code)}</pre>'


def sources(circuit, checked) -> list[str]:
    """References a box input may take: the circuit's inputs, then each box's outputs
    (`box` when it has one, `box.port` for each otherwise), in evaluation order."""
    refs = [i.name for i in circuit.inputs]
    if checked is None:
        return refs + [b.name for b in circuit.boxes]
    for b in checked.order:
        outs = list(checked.outs.get(b, {}))
        refs += [b] if len(outs) <= 1 else [f"{b}.{p}" for p in outs]
    return refs


def check_draft(circuit):
    """Validate `circuit` as a circuit under construction; raises ValidationError.

    A circuit with inputs but no outputs yet is a draft: it is checked with a stand-in output
    (its first input) so that its boxes are typed. A box with input ports that read nothing
    yet (being wired: `edits.open_boxes`) is set aside: the rest is checked without it, and
    nothing may read it until it is complete. The empty circuit checks to None."""
    from ncd.circuits.circuit import Output

    if not (circuit.inputs or circuit.boxes or circuit.outputs):
        return None
    circuit = complete_part(circuit)
    if not (circuit.inputs or circuit.boxes or circuit.outputs):
        return None
    if circuit.outputs or not circuit.inputs:
        return circuit.check()
    stand_in = Output(name=DRAFT_OUTPUT, source=circuit.inputs[0].name)
    return circuit.model_copy(update={"outputs": [stand_in]}).check()


def complete_part(circuit):
    """`circuit` (and its subcircuits) without the boxes whose ports are not all wired yet;
    raises ValidationError where anything reads such a box, or where one of its wired ports
    reads no known value (the validator, which never sees it, would not say so)."""
    from ncd.circuits.errors import ValidationError

    from .edits import input_ports, names, open_boxes, ref_box

    opened = open_boxes(circuit)
    subs = {k: complete_part(sub) for k, sub in circuit.subcircuits.items()}
    if not opened:
        if all(subs[k] is sub for k, sub in circuit.subcircuits.items()):
            return circuit
        return circuit.model_copy(update={"subcircuits": subs})
    problems = []
    known = names(circuit)
    for b in circuit.boxes:
        for port, ref in b.inputs.items():
            src, where = ref_box(ref), f"box '{b.name}', port '{port}'"
            if b.name in opened and port not in input_ports(b):
                ports = " ".join(input_ports(b))
                problems.append(Problem(f"box '{b.name}'", "no such input port", ports, port))
            elif src in opened:
                problems.append(_reads_open(where, src, opened[src]))
            elif b.name in opened and ref and src not in known:
                problems.append(Problem(where, "unknown source", "an input or a box", ref))
    for o in circuit.outputs:
        if ref_box(o.source) in opened:
            src = ref_box(o.source)
            problems.append(_reads_open(f"output '{o.name}'", src, opened[src]))
    if problems:
        raise ValidationError(circuit.name, problems)
    boxes = [b for b in circuit.boxes if b.name not in opened]
    return circuit.model_copy(update={"boxes": boxes, "subcircuits": subs})


def _reads_open(where: str, box: str, ports: list[str]) -> Problem:
    return Problem(
        where, f"reads box '{box}', whose ports are not all wired yet",
        f"ports {' '.join(ports)} of '{box}' wired first", "them unwired",
    )  # fmt: skip


DRAFT_OUTPUT = "(draft)"


DANGLING = "\u2026"  # the name of an output drawn for a value nothing reads starts with it


def drawable(circuit, checked):
    """The circuit as the editor draws it: every value that nothing reads (a draft's last
    box, a box whose result is not used yet) leaves by an output named `…box`, so that its
    wires are drawn dangling rather than not at all. `checked` is `check_draft(circuit)`."""
    return drawing(circuit, checked)[0]


def drawing(circuit, checked):
    """(`drawable(circuit, checked)`, its check): the drawn circuit differs from `circuit`
    only by outputs taken from values `checked` has typed, so its check is `checked` with
    those outputs, not a second validation. (circuit, None) for the empty circuit.

    A box whose ports are not all wired (`edits.open_boxes`; `checked` has set it aside) is
    drawn as a stand-in that takes what it reads: an `opaque` box of its name (a `?`, its
    kind, and the ports to wire as caption), each unwired port fed by a loose end, a scalar
    `param` named `…box:port` (`loose_input`) labelled with the port and a `?` (`k?`: a
    port's name alone read as a box of the user's named k; a box without inputs is drawn just
    before its reader); that drawing is checked again."""
    from ncd.circuits.circuit import Output

    if checked is None:
        return circuit, None
    from .edits import open_boxes

    opened = open_boxes(circuit)
    read = {src for ports in checked.sources.values() for src in ports.values()}
    read |= {src for name, src in checked.output_sources.items() if name != DRAFT_OUTPUT}
    # what a box being wired reads is not a loose end either
    for b in circuit.boxes:
        if b.name in opened:
            read |= {_source(checked, r) for r in b.inputs.values() if r}
    loose = [("", i.name) for i in circuit.inputs if ("", i.name) not in read]
    for b in checked.order:
        outs = list(checked.outs.get(b, {}))
        loose += [(b, p) for p in outs if (b, p) not in read]
    taken = {o.name for o in circuit.outputs}
    extra = []
    for box, port in loose:
        single = box == "" or len(checked.outs[box]) == 1
        ref = (box or port) if single else f"{box}.{port}"
        name = DANGLING + ref.replace(".", ":")
        if name not in taken:
            extra.append((Output(name=name, source=ref), (box, port)))
    if opened:
        drawn = _with_stand_ins(circuit, opened)
        outputs = [*circuit.outputs, *(o for o, _ in extra)]
        drawn = drawn.model_copy(update={"outputs": outputs})
        return drawn, _check_drawn(drawn)
    drawn = circuit
    if extra:
        outputs = [*circuit.outputs, *(o for o, _ in extra)]
        drawn = circuit.model_copy(update={"outputs": outputs})
    sources = {o.name: checked.output_sources[o.name] for o in circuit.outputs}
    sources |= {o.name: src for o, src in extra}
    if drawn is circuit and sources == checked.output_sources:
        return circuit, checked
    values = {name: checked.value(src) for name, src in sources.items()}
    return drawn, replace(checked, circuit=drawn, outputs=values, output_sources=sources)


def loose_input(box: str, port: str) -> str:
    """The name of the loose end drawn for input `port` of `box` while it reads nothing."""
    return f"{DANGLING}{box}:{port}"


def _source(checked, ref: str) -> tuple[str, str]:
    """(box, port) of a reference as `checked.sources` holds it (`('', x)` for an input)."""
    box, _, port = ref.partition(".")
    if box in checked.inputs:
        return ("", box)
    return (box, port or next(iter(checked.outs.get(box, {})), ""))


def _with_stand_ins(circuit, opened: dict[str, list[str]]):
    """`circuit` with each box being wired drawn as an opaque stand-in fed by loose ends."""
    from ncd.circuits.kinds import KINDS

    from .edits import input_ports

    boxes = []
    for b in circuit.boxes:
        if b.name not in opened:
            boxes.append(b)
            continue
        ports = input_ports(b)
        for port in opened[b.name]:
            boxes.append(KINDS["param"].model_validate(
                {"kind": "param", "name": loose_input(b.name, port), "label": f"{port}?",
                 "axes": []}
            ))  # fmt: skip
        inputs = {p: b.inputs.get(p) or loose_input(b.name, p) for p in ports}
        # titled by its kind (a name's `_` would be set as a subscript)
        boxes.append(KINDS["opaque"].model_validate({
            "kind": "opaque", "name": b.name, "label": b.label or b.kind.replace("_", " "),
            "group": b.group, "in_ports": ports, "inputs": inputs, "outputs": {"out": []},
            "target": f"wire {' '.join(opened[b.name])}",
        }))  # fmt: skip
    return circuit.model_copy(update={"boxes": boxes})


def _check_drawn(drawn):
    """The check of a drawing with stand-ins, without the draft's stand-in output."""
    checked = check_draft(drawn)
    if DRAFT_OUTPUT not in checked.output_sources:
        return checked
    outputs = {k: v for k, v in checked.outputs.items() if k != DRAFT_OUTPUT}
    sources = {k: v for k, v in checked.output_sources.items() if k != DRAFT_OUTPUT}
    return replace(checked, outputs=outputs, output_sources=sources)


# ---- the text view's drafts --------------------------------------------------------------------
_DRAFT_TARGET = "ncd studio: a box being wired"  # marks the stand-ins read_script puts in


def read_script(text: str):
    """`circuits.script.from_script(text)`, also for a draft: the text view writes a box whose
    ports do not all read something yet (`edits.open_boxes`) as `v = b.box("kind", {wired
    ports}, ...)`, which the Builder refuses (it types every box as it goes). Such a statement
    is read as an `opaque` stand-in with the ports it has (so its wires are read as the reader
    reads any), and the stand-in is then put back as the box, its ports open. Its kind's
    fields are literals (`ast.literal_eval`); nothing is run. Raises the reader's ScriptError
    (at the text's own lines) where the text is not Builder code even so."""
    from ncd.circuits.script import from_script

    try:
        return from_script(text)
    except NcdError as first:
        drafts, rewritten = _draft_statements(text)
        if not drafts:
            raise first from None
    read = from_script(rewritten)
    return _put_back(read, drafts)


def _draft_statements(text: str):
    """({stand-in name: (kind, fields, name or None)}, the text with each statement making a
    box with open ports rewritten to make a stand-in, on the same lines)."""
    import ast

    from ncd.circuits.kinds import KINDS

    from .edits import input_ports

    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {}, text
    lines = text.split("\n")
    drafts = {}

    def visit(body):
        for st in body:
            if isinstance(st, ast.With):
                visit(st.body)
                continue
            call = st.value if isinstance(st, (ast.Assign, ast.Expr)) else None
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "box"
                and isinstance(call.func.value, ast.Name)
                and len(call.args) == 2
                and isinstance(call.args[0], ast.Constant)
                and call.args[0].value in KINDS
                and isinstance(call.args[1], ast.Dict)
                and all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                        for k in call.args[1].keys)
                and all(k.arg is not None for k in call.keywords)
            ):  # fmt: skip
                continue
            kind, given = call.args[0].value, [k.value for k in call.args[1].keys]
            try:
                fields = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
                name = fields.pop("name", None)
                probe = KINDS[kind](name="probe", inputs={}, **fields)
            except Exception:  # noqa: BLE001 - not a draft: the reader says what is wrong
                continue
            ports = input_ports(probe)
            if kind == "call" or not set(given) < set(ports):
                continue
            first, last = lines[st.lineno - 1], lines[st.end_lineno - 1]
            if first[: st.col_offset].strip() or last[st.end_col_offset :].strip():
                continue  # shares its line with another statement
            stand_in = f"\u2026draft{len(drafts)}"
            drafts[stand_in] = (kind, fields, name)
            targets = getattr(st, "targets", [])
            lhs = "".join(ast.get_source_segment(text, t) + " = " for t in targets)
            wires = ast.get_source_segment(text, call.args[1])
            lines[st.lineno - 1] = (
                f'{first[: st.col_offset]}{lhs}{call.func.value.id}.box("opaque", {wires}, '
                f'name={stand_in!r}, in_ports={given!r}, outputs={{"out": []}}, '
                f"target={_DRAFT_TARGET!r})"
            )
            for k in range(st.lineno, st.end_lineno):
                lines[k] = ""

    visit(tree.body)
    return drafts, "\n".join(lines)


def _put_back(circuit, drafts):
    """Each stand-in of `drafts` in `circuit` (or its subcircuits) becomes its box."""
    from ncd.circuits.kinds import KINDS

    from .edits import _replace_refs

    subs = {k: _put_back(sub, drafts) for k, sub in circuit.subcircuits.items()}
    boxes, names = [], {}
    for b in circuit.boxes:
        if b.kind != "opaque" or b.target != _DRAFT_TARGET or b.name not in drafts:
            boxes.append(b)
            continue
        kind, fields, name = drafts[b.name]
        if name is None:  # named as the Builder names it: `kind`, `kind_2`, ...
            taken = {x.name for x in circuit.boxes} | {i.name for i in circuit.inputs}
            name = next(n for k in itertools.count(1)
                        if (n := kind if k == 1 else f"{kind}_{k}") not in taken)  # fmt: skip
        names[b.name] = name
        boxes.append(KINDS[kind](**{"name": name, "inputs": dict(b.inputs), "group": b.group,
                                    **fields}))  # fmt: skip
    circuit = circuit.model_copy(update={"boxes": boxes, "subcircuits": subs})
    for stand_in, name in names.items():  # what reads it (refused by the check) names it
        circuit = _replace_refs(circuit, stand_in, name, rename=True)
    return circuit
