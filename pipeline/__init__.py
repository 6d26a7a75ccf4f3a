"""The Beam graph, job configuration and the ``groundcot`` command line."""
