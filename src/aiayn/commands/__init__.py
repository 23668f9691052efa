"""The `aiayn` subcommands, one module each with `add_parser(subparsers)` and `run(args)`:
the only code that reads argparse namespaces. Each turns its options into plain arguments for
the library (tasks, decode, interop, serve, ...) and imports that only when it runs, so that
`aiayn --help` loads neither torch's heavier parts nor the web stack. `aiayn.cli` assembles
them; their shared helpers are in `aiayn.commands.common`."""
