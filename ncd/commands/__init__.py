"""CLI subcommands, one module per view. Each module has `register(subparsers)` and may have
`demo(out_dir)`, a step of `ncd demo`. Listed in the order they run in the demo."""

MODULES = ["language", "compile", "importer", "render", "analyse", "gallery"]
