"""The raw store and what fills it: registry pages as served, their manifests and the search answers.

:mod:`.storage` (keys, the local and S3 stores, the manifest format), :mod:`.scrape` (the walk: each
receipt date x method_type partition by sequence number), :mod:`.discover` (the search-driven daily
flow: list completed dates, fetch what is new or moved) and :mod:`.reconcile` (the walk's found IDs
against the search's listings, per receipt day). Nothing here writes a Delta table: bronze reads what
these leave in the raw store.
"""
