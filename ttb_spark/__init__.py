"""ttb_spark: the US TTB Public COLA Registry as a Spark + Delta lakehouse."""

__version__ = "0.1.0"
