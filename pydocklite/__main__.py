from pydocklite.cli.main import entry

entry()
