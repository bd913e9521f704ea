"""The OOM-kill counter of our own cgroup: found from /proc/self/cgroup, read with a memory of
a few seconds so that a kill counted just before the victim's exit is seen."""

from __future__ import annotations

from pathlib import Path

from pillbox.supervisor.oom import OomWatch, counter_files, read_counter

V1 = """9:name=systemd:/
4:memory:/process_api/abc
1:cpu:/
0::/
"""


def test_v1_memory_hierarchy_is_found_before_the_root():
    files = counter_files(V1, Path("/cg"))
    assert files[0] == (Path("/cg/memory/process_api/abc/memory.oom_control"), "oom_kill")
    assert (Path("/cg/memory/memory.oom_control"), "oom_kill") in files


def test_v2_unified_path_is_found():
    files = counter_files("0::/user.slice/app.service\n", Path("/cg"))
    assert files[0] == (Path("/cg/user.slice/app.service/memory.events"), "oom_kill")
    assert len(files) == len(set(files))


def write_counter(path: Path, kills: int) -> None:
    path.write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")


def test_read_counter_takes_the_first_readable_file(tmp_path):
    present = tmp_path / "memory.oom_control"
    write_counter(present, 7)
    assert read_counter([(tmp_path / "missing", "oom_kill"), (present, "oom_kill")]) == 7
    assert read_counter([(tmp_path / "missing", "oom_kill")]) == -1


def test_a_kill_counted_before_the_latest_sample_is_still_seen_within_the_window(tmp_path):
    counter = tmp_path / "memory.oom_control"
    write_counter(counter, 2)
    watch = OomWatch([(counter, "oom_kill")], window_s=5.0)
    watch.sample(100.0)
    assert not watch.struck(100.1)
    write_counter(counter, 3)  # the kernel kills at 100.2 ...
    watch.sample(100.4)        # ... the supervisor samples ...
    assert watch.struck(100.5)  # ... and reaps the victim after that sample
    watch.sample(106.0)
    watch.sample(106.2)
    assert not watch.struck(106.3)  # an old kill does not explain a new SIGKILL


def test_no_counter_means_never_struck(tmp_path):
    watch = OomWatch([(tmp_path / "none", "oom_kill")])
    watch.sample(1.0)
    assert not watch.struck(2.0)
