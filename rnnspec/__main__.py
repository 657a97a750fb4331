from rnnspec.cli import entry

entry()
