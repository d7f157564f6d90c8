"""Progress reaches log files as whole lines; a terminal gets a bar."""

import io

from nbp.progress import LogProgress, progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_lines_at_start_and_end():
    log = io.StringIO()
    items = list(progress(range(5), desc="encoding", unit="video", stream=log, every=3600))
    assert items == [0, 1, 2, 3, 4]
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("encoding: 0/5 video (0%)") and lines[-1].startswith("encoding: 5/5 video (100%)")


def test_a_log_file_gets_a_line_every_interval():
    log = io.StringIO()
    with progress(total=3, desc="generating", unit="video", stream=log, every=0.0) as bar:
        bar.update(1)
        bar.set_postfix_str("nbp 10 steps")
        bar.update(2)
    lines = log.getvalue().splitlines()
    assert isinstance(bar, LogProgress)
    assert [line.split(",")[0] for line in lines] == ["generating: 0/3 video (0%)", "generating: 1/3 video (33%)",
                                                     "generating: 1/3 video (33%)", "generating: 3/3 video (100%)",
                                                     "generating: 3/3 video (100%)"]
    assert lines[2].endswith("nbp 10 steps")


def test_a_terminal_gets_a_bar_and_disabled_means_silent():
    term = Terminal()
    with progress(total=2, desc="sampling", stream=term) as bar:
        bar.update(2)
    assert "\r" in term.getvalue() and "sampling" in term.getvalue()
    quiet = io.StringIO()
    with progress(total=2, desc="x", stream=quiet, enabled=False) as bar:
        bar.update(2)
    assert quiet.getvalue() == ""
