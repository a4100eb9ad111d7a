"""Integrations with the tools a NOC already runs; each module is an optional extra.

* :mod:`ocad.core.integrations.alertmanager` (extra ``alertmanager``): alerts as
  Alertmanager API v2 payloads, and a sink that posts them.
* :mod:`ocad.core.integrations.prometheus` (extra ``prometheus``): the Monitor's own
  health as Prometheus metrics, and an HTTP endpoint to scrape them.

Never imported by ``import ocad.core`` nor by any runtime module (the CLI imports them
only when asked to); import the module you need.
"""
