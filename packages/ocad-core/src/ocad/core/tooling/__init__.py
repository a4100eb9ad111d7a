"""Quality tooling (evaluation suites, scenario families); never imported by ``import ocad.core``."""
