"""The check kinds, one module each: plain functions of (subject, case) that return the measure
the report shows and raise ``ConformanceError`` on a failure. They build on ``conformance.core``
only; ``conformance.checks`` is the table that names them.
"""
