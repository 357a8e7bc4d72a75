"""``python -m demo``: the same as ``csync demo``."""

from demo.cli import demo

demo.main(prog_name="csync demo")
