"""The Studio's widgets and where they sit: the form column on the left, the diagram in the
middle, the text view on the right, the Messages, Cost, Code and JSON tabs below.

`_build_widgets` makes every widget the other parts use (`self.canvas`, `self.palette`,
`self.box_name`, ...) and connects each to its handler; it holds no state of the circuit.
"""

from __future__ import annotations

import functools

import ipywidgets as w

from ncd.circuits.types import DTYPES

from .canvas import Canvas
from .forms import fitted, palette_options
from .textview import _script
from .views import TABS, _palette


class StudioLayout:
    """The widget tree of a Studio (a part of `Studio`, widgets/studio.py)."""

    def _build_widgets(self) -> None:
        button = functools.partial(w.Button, layout=w.Layout(width="auto"))
        # the diagram
        self.canvas = Canvas(palette=_palette())
        self.canvas.on_intent(self._intent)
        # palette, form, wiring
        # The form opens on the box most often drawn first on an input: a linear map (the
        # palette's first kind, an embedding, opened a blank Studio on "vocab: required").
        self.palette = w.Dropdown(
            options=palette_options(), value="linear", description="kind", **fitted()
        )
        self.box_name = w.Text(
            description="name", placeholder="new: left empty, kind2…", **fitted(),
            continuous_update=False,
        )  # fmt: skip
        self.form_box = w.VBox()
        self.wiring = w.VBox()
        self.add_box_button = button(description="add box", button_style="primary")
        self.palette.observe(lambda _: self._kind_chosen(), names="value")
        # The name is a field like the others: Enter (or leaving it) renames the box shown.
        self.box_name.observe(lambda _: self._field_changed("name"), names="value")
        self.add_box_button.on_click(lambda _: self._add_box())
        # delete, inputs, outputs
        self.box_select = w.Dropdown(description="box", **fitted())
        # A box chosen in the list is selected as a click on it would: the form shows it.
        self.box_select.observe(lambda _: self._box_chosen(), names="value")
        self.delete_box_button = button(description="delete box")
        self.delete_box_button.on_click(lambda _: self._delete_box())
        self.edit_box_button = button(description="edit in form")
        self.edit_box_button.on_click(lambda _: self._edit_box())
        self.replace_box_button = button(description="apply to box")
        self.replace_box_button.on_click(lambda _: self._replace_box())
        self.input_name = w.Text(description="input", placeholder="name", **fitted())
        self.input_axes = w.Text(description="axes", placeholder="B T D", **fitted())
        self.input_dtype = w.Dropdown(options=list(DTYPES), description="dtype", **fitted())
        self.add_input_button = button(description="add input")
        self.add_input_button.on_click(lambda _: self._add_input())
        self.output_name = w.Text(description="output", placeholder="name", **fitted())
        self.output_source = w.Dropdown(description="from", **fitted())
        self.set_output_button = button(description="set output")
        self.set_output_button.on_click(lambda _: self._set_output())
        # history and files
        self.undo_button = button(description="undo", icon="undo")
        self.redo_button = button(description="redo", icon="repeat")
        self.undo_button.on_click(lambda _: self.undo())
        self.redo_button.on_click(lambda _: self.redo())
        self.path = w.Text(description="file", placeholder="circuit.json", **fitted())
        self.path.observe(lambda _: self._reset_confirm(), names="value")
        self.save_button = button(description="save")
        self.load_button = button(description="load")
        self.save_button.on_click(lambda _: self._save())
        self.load_button.on_click(lambda _: self.load(self.path.value.strip()))
        self.export_path = w.Text(
            description="export", placeholder="diagram.svg|pdf|png, model.py", **fitted()
        )
        self.export_button = button(description="export")
        self.export_button.on_click(lambda _: self._export())
        # views
        self.theme = w.ToggleButtons(options=["paper", "notebook"], value="paper")
        self.theme.observe(lambda _: self._refresh_diagram(), names="value")
        self.messages = w.HTML()
        self.text = w.Textarea(
            placeholder="the circuit as Builder code",
            continuous_update=False,
            layout=w.Layout(width="100%", height="260px"),
        )
        self.text.add_class("ncd-text")
        self.text.observe(lambda _: self._apply_text(), names="value")
        self.text_status = w.HTML()
        # Text that was not taken stays until it is fixed or discarded (never overwritten).
        self.discard_text_button = w.Button(  # a layout of its own: it is hidden and shown
            description="discard text changes", icon="times", layout=w.Layout(width="auto")
        )
        self.discard_text_button.add_class("ncd-discard-text")
        self.discard_text_button.on_click(lambda _: self._discard_text())
        self.discard_text_button.layout.display = "none"
        self.sizes = w.Text(
            description="sizes", placeholder="B=2,T=128", style={"description_width": "90px"}
        )
        self.sizes.observe(lambda _: self._sizes_changed(), names="value")
        self.default_sizes_button = button(description="make these the default sizes")
        self.default_sizes_button.on_click(lambda _: self._default_sizes())
        self.cost = w.HTML()
        self.code = w.HTML()
        self.json_text = w.Textarea(layout=w.Layout(width="100%", height="360px"))
        self.apply_json_button = button(description="apply JSON", button_style="primary")
        self.apply_json_button.on_click(lambda _: self._apply_json())
        # JSON typed there and not applied stays until it is applied or discarded
        self.json_status = w.HTML()
        self.discard_json_button = w.Button(  # a layout of its own: it is hidden and shown
            description="discard JSON changes", icon="times", layout=w.Layout(width="auto")
        )
        self.discard_json_button.on_click(lambda _: self._discard_json())
        self.discard_json_button.layout.display = "none"
        self.tabs = w.Tab(
            [
                self.messages,
                w.VBox([w.HBox([self.sizes, self.default_sizes_button]), self.cost]),
                self.code,
                w.VBox(
                    [
                        self.json_status,
                        self.json_text,
                        w.HBox([self.apply_json_button, self.discard_json_button]),
                    ]
                ),
            ],
            titles=TABS,
            selected_index=0,  # the others are computed when shown, never on every edit
        )
        self.tabs.observe(lambda _: self._refresh_tab(), names="selected_index")

        def section(title, *items):
            return w.VBox([w.HTML(f"<b>{title}</b>"), *items])

        # The form's heading says whose fields it shows: the selected box's, or a new box's.
        self.form_title = w.HTML()
        left = w.VBox(
            [
                w.VBox(
                    [self.form_title, self.box_select, self.box_name, self.form_box, self.wiring]
                ),  # fmt: skip
                w.HBox([self.replace_box_button, self.delete_box_button]),
                # adds a new box: the kind and fields above, under a name of its own
                section("Add a box", self.palette, self.add_box_button),
                section("Inputs", self.input_name, self.input_axes, self.input_dtype),
                self.add_input_button,
                section("Outputs", self.output_name, self.output_source, self.set_output_button),
                w.HBox([self.undo_button, self.redo_button, self.edit_box_button]),
                section("Files", self.path, w.HBox([self.save_button, self.load_button])),
                self.export_path,
                self.export_button,
            ],
            layout=w.Layout(width="300px", min_width="300px"),
        )
        left.add_class("ncd-form")
        text = w.VBox(
            [w.HTML("<b>Text</b>"), self.text, self.text_status, self.discard_text_button]
        )
        text.layout = w.Layout(width="320px", min_width="260px")
        if _script() is None:
            text.layout.display = "none"
        # The diagram keeps a readable width: in a narrow notebook the text view goes below.
        middle = w.VBox(
            [self.theme, self.canvas], layout=w.Layout(flex="1 1 560px", min_width="480px")
        )
        self.children = [
            w.HBox([left, middle, text], layout=w.Layout(flex_flow="row wrap")),
            self.tabs,
        ]
