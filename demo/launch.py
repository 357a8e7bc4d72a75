"""Run one ``csync`` command in a child process of the demo: ``python -m demo.launch <command> [args]``.

The same ``csync`` group as the installed script (:mod:`csync.cli`); only the module name differs, so a
child's command line says it is the demo's (:data:`demo.processes.MARKER`) and a later demo can sweep what a
killed one left behind without touching anybody else's ``csync`` process.
"""

from __future__ import annotations

from csync.cli import main

if __name__ == "__main__":
    main(prog_name="csync")
