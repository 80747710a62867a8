from penumbra.cli import entry

entry()
