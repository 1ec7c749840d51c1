"""From a Snakemake job to a step call and back: the runner and the generic data steps, the config check, recovery after a killed run, planning, progress bars and the command line."""
