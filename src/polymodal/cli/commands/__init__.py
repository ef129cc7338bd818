"""The command handlers, grouped by area: each ``cmd_*`` takes the parsed arguments and calls a
plain Python function. The parser that names them is `polymodal.cli.main.build_parser`."""
