"""The training Runner's log: mmengine's known harmless warnings are left out, every other record kept."""

import logging

from mmengine.logging import MMLogger, print_log

from circle_repro.engine.runner import HARMLESS_WARNINGS, HarmlessWarningFilter


def test_the_filter_drops_the_listed_warnings_and_keeps_every_other_record(capsys):
    logger = MMLogger.get_instance("test_harmless_warning_filter", log_level="INFO")
    logger.addFilter(HarmlessWarningFilter())
    for message in HARMLESS_WARNINGS:
        print_log(f"{message} more text", logger=logger, level=logging.WARNING)
    print_log("a warning that matters", logger=logger, level=logging.WARNING)
    print_log('"FileClient" will be deprecated in future.', logger=logger, level=logging.ERROR)
    print_log("Dataset ManifestDataset has no metainfo.", logger=logger, level=logging.INFO)
    out = capsys.readouterr().out
    assert "more text" not in out
    assert "WARNING - a warning that matters" in out
    errors = [line for line in out.splitlines() if "mmengine - ERROR - " in line]
    assert len(errors) == 1 and errors[0].endswith('"FileClient" will be deprecated in future.'), "only warnings go"
    assert "INFO - Dataset ManifestDataset has no metainfo." in out
