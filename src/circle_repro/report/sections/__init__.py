"""The report's sections, one module each; ``circle_repro.report.build`` puts them in order and writes them."""
