# tsekit's fixtures (tsekit_cli, make_plugin_set) and conformance helpers.
pytest_plugins = ["tsekit.testing"]
