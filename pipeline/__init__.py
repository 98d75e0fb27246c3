"""Pipeline: the jobs that run research on the lake, the files they leave, and their reports.

What lives here:

* ``nightly``: one night as plain functions (regimes, sweeps, choices, the gate): a candidate params file
* ``sweep``: a sweep as a resumable job, its chunks stored in the lake's ``sweeps`` table
* ``params_store``: params files on disk: candidates, ``current.json`` and ``history/``, diffs, the
  schema file, the code version (git)
* ``run_report``: self-contained HTML pages of plotly figures and tables
* ``nightly_summary``: the night at a glance (verdict, counts, near misses, the target), typed, as
  ``summary.json``: the report opens with it and ``tradelab nightly`` prints it
* ``nightly_report``, ``sweep_report``: the nightly's page and the sweep heatmaps

What it may import: ``data_lake`` and ``research``. Never ``live_bridge`` or ``tradelab`` (the CLI
calls this package, not the reverse); ``research`` and ``data_lake`` never import this one. The
computation (signals, sweeps' engine, walk-forward, guards, the gate, the params model) is
``research``'s; a module here reads, writes, runs and shows it.
"""
