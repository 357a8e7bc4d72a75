"""``make demo``: the whole pipeline on local real services, a live dashboard, and an HTML report."""
