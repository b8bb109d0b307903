"""ncd: neural circuit diagrams."""
