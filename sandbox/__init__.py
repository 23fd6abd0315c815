"""The government data sandbox: the product that composes ``policies`` and ``federation``.

Where each concept lives:

* :mod:`sandbox.catalog` — dataset manifests (public metadata) and checking rows against them.
* :mod:`sandbox.query` — the DP query engine: SQL -> validated plan -> OpenDP measurement.
* :mod:`sandbox.service` — the governed query path (policy decision, ledger, log).
* :mod:`sandbox.training` — the governed training path (federated DP-SGD over catalog data).
* :mod:`sandbox.mock` — mock rows drawn from public metadata only.
* :mod:`sandbox.generate` — seeded synthetic department data for four Shandong cities.
* :mod:`sandbox.cli`, :mod:`sandbox.audit_cli` — the ``sandbox`` command line.
* :mod:`sandbox.demo` — the embedded end-to-end demo.
* :mod:`sandbox.errors` — every exception the sandbox raises.
"""
