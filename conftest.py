"""`pytest ablations`: the session engine is the pytest plugin vggbench.plugin (inside the package)."""
pytest_plugins = ["vggbench.plugin"]
