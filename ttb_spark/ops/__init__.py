"""Operating the pipeline, above the layers: what runs the stages and keeps a lakehouse in order.

:mod:`.runner` (jobs as lists of stages, chunks, resume, the summary), :mod:`.audit` (``ops.pipeline_runs``:
one row per job run), :mod:`.locks` (``ops.run_locks``: one run at a time per range, gold serialised),
:mod:`.maintain` (OPTIMIZE and VACUUM within what pending changes still need) and :mod:`.adopt` (bringing a
path-table lakehouse under a catalog). No layer module (registry, raw, lakehouse, bronze, silver, gold)
imports from here; the command line (:mod:`ttb_spark.cli`) does.
"""
