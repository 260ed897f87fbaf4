"""Results across runs: seed statistics and paired intervals (stats), shared by the demo report and the table."""
