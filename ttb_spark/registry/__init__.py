"""The registry side: everything about the TTB Public COLA Registry itself, nothing about the lakehouse.

:mod:`.ttb_id` (the 14-digit TTB ID, validated before it reaches a URL or a key), :mod:`.client` (HTTP:
sessions, politeness, retries, page fetches and searches), :mod:`.search` (search criteria, results pages
and the CSV export), :mod:`.listing` (whole-or-fail listing of completed dates under the search cap),
:mod:`.parse` (pure parsing of detail and certificate pages) and :mod:`.simulator` (the loopback registry
the tests and the demo run against, rendered from real pages).
"""
