"""From scores to what a reader sees: the long score format, statistics, claims over seeds, tables and figures."""
