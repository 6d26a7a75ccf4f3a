"""Job configs, deployment recipes and the bundled demo data."""
