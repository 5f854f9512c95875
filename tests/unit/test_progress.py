"""tlrun's one progress bar (Rich, on stderr): steps or bytes, shown once finished where stderr is no terminal, or
not at all when transient there, delayed or turned off. Under pytest's capture stderr is no terminal."""

import pytest

from tlrun.progress import progress_bar


def test_a_bar_of_steps_is_printed_once_finished(capsys):
    with progress_bar("features", 5) as bar:
        bar.update(2)
        bar.update(3)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("features") and "5/5" in line


def test_a_bar_of_bytes_takes_a_total_told_late_as_tqdm_s_users_do(capsys):
    with progress_bar("archive.tar.gz", unit="bytes") as bar:
        bar.total = 0  # unknown, as pooch says when the server sends no length
        assert bar.total is None
        bar.update(3 << 20)
        bar.total = 2 << 20
        bar.reset()
        bar.update(2 << 20)
        bar.close()
    shown = capsys.readouterr().err
    assert "archive.tar.gz" in shown and "2.1/2.1 MB" in shown


@pytest.mark.parametrize("settings", [dict(show=False), dict(transient=True), dict(delay_s=60.0)])
def test_a_bar_turned_off_transient_where_no_terminal_or_not_yet_due_shows_nothing(capsys, settings):
    with progress_bar("quick", 3, **settings) as bar:
        bar.update(3)
    assert "quick" not in capsys.readouterr().err


def test_a_status_line_shows_on_a_terminal_only_and_vanishes(capsys, monkeypatch):
    from tlrun.progress import status_line

    with status_line("jda: fitting on 10 + 10 samples"):
        pass
    assert capsys.readouterr().err == ""  # a log keeps no spinner
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich then treats stderr as a terminal
    with status_line("jda: fitting on 10 + 10 samples"):
        pass
    assert "jda: fitting on 10 + 10 samples" in capsys.readouterr().err
