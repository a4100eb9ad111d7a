"""asv benchmark suites of OCAD (see ``benchmarks/asv.conf.json`` and ``docs/performance.md``)."""
