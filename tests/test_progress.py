"""d3d_tf.core.progress: rate and ETA from the end of the first unit (compile time left out), on a
fake clock."""
from d3d_tf.core import progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_eta_leaves_out_the_first_step():
    clock = Clock()
    p = progress.Progress(10, clock=clock)
    assert p.rate() is None and p.eta() is None
    clock.now += 180.0                      # the first step traces and compiles: 3 minutes
    p.update()
    assert p.rate() is None and p.eta() is None  # nothing measured after it yet
    assert p.line("steps") == "1/10 steps, ? steps/s, elapsed 0:03:00, ETA ?"
    clock.now += 2.0                        # then 1 s a step
    p.update(2)
    assert p.rate() == 1.0 and p.eta() == 7.0
    assert p.line("steps") == "3/10 steps, 1 steps/s, elapsed 0:03:02, ETA 0:00:07"
    clock.now += 7.0
    p.update(7)
    assert p.eta() == 0.0 and p.line("steps").endswith("ETA 0:00:00")


def test_from_the_start_and_unknown_total():
    clock = Clock()
    sweep = progress.Progress(4, skip_first=False, clock=clock)
    clock.now += 60.0
    sweep.update()
    assert sweep.rate() == 1 / 60 and sweep.eta() == 180.0
    assert sweep.line("endpoints") == ("1/4 endpoints, 0.0167 endpoints/s, elapsed 0:01:00, "
                                       "ETA 0:03:00")
    open_ended = progress.Progress(None, clock=clock)
    open_ended.update(5)
    clock.now += 1.0
    open_ended.update(250)
    assert open_ended.rate() == 250.0 and open_ended.eta() is None
    assert open_ended.line("clips") == "255 clips, 250 clips/s, elapsed 0:00:01, ETA ?"


def test_lines_are_due_first_then_every_interval_and_at_the_end():
    clock = Clock()
    p = progress.Progress(5, clock=clock)
    due = []
    for dt in (50.0, 10.0, 25.0, 1.0, 1.0):
        clock.now += dt
        p.update()
        due.append(p.due(30.0))
    assert due == [True, False, True, False, True]


def test_hms():
    assert progress.hms(0) == "0:00:00" and progress.hms(3725.4) == "1:02:05"
    assert progress.hms(None) == "?" and progress.hms(float("nan")) == "?"
