"""Record types, Parquet columns, box geometry and the CoT grammar. Pure Python + numpy."""
