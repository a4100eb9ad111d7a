"""Integrations with other systems (Alertmanager, Prometheus): optional extras.

Never imported by ``import ocad.core`` nor by any runtime module.
"""
