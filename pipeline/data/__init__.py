"""Data: sources (digits, keras datasets, image folders), split, normalization, storage."""
