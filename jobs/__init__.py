"""The platform's jobs, one module each (installed as package `phm_jobs`).

Each module declares `SPEC` (a phm.runtime.jobs.JobSpec) and `run(ctx)`, and
runs on its own under spark-submit: `spark-submit jobs/<name>.py --config FILE`.
"""
