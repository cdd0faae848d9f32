"""Docker's json-file log format: writer (partials, rotation, threads) and reader."""
from __future__ import annotations

import io
import json
import re
import threading
import time
from datetime import datetime, timezone

import pytest

from pydocklite.shim.logs import (PARTIAL_SIZE, JsonLogWriter, LogError, copy_logs, format_time,
                                  log_files, parse_size, parse_time_ns, read_entries, read_logs)

T0 = 1_764_496_681_123_456_789  # 2025-11-30T09:58:01.123456789Z


class Clock:
    def __init__(self, start=T0, step=1_000_000):
        self.now, self.step = start, step

    def __call__(self):
        self.now += self.step
        return self.now


def entries(path):
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_time_formats():
    assert format_time(T0) == "2025-11-30T09:58:01.123456789Z"
    assert format_time(T0 - 789) == "2025-11-30T09:58:01.123456Z"      # RFC3339Nano trims zeros
    assert format_time(T0 - 123456789) == "2025-11-30T09:58:01Z"
    assert format_time(T0 - 789, fixed=True) == "2025-11-30T09:58:01.123456000Z"
    assert parse_time_ns("2025-11-30T09:58:01.123456789Z") == T0
    assert parse_time_ns("2025-11-30T10:58:01.123456789+01:00") == T0


def test_docker_json_file_format(tmp_path):
    log = tmp_path / "c-json.log"
    with JsonLogWriter(log) as w:
        w.write("stdout", b"hello\nworld\n")
        w.write("stderr", b"oops <&>\n")
    raw = log.read_bytes().splitlines()
    assert re.fullmatch(rb'\{"log":"hello\\n","stream":"stdout","time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d'
                        rb'(\.\d{1,9})?Z"\}', raw[0])
    assert b'"log":"oops \\u003c\\u0026\\u003e\\n"' in raw[2]  # Go's HTML-safe escaping
    assert list(read_logs(log)) == [("stdout", b"hello\n"), ("stdout", b"world\n"),
                                    ("stderr", b"oops <&>\n")]


def test_partial_lines_join_and_long_lines_split(tmp_path):
    log = tmp_path / "json.log"
    w = JsonLogWriter(log)
    w.write("stdout", b"abc")
    w.write("stderr", b"E")
    w.write("stdout", b"def\n")
    long_line = b"x" * (2 * PARTIAL_SIZE + 100) + b"\n"
    w.write("stdout", long_line)
    w.write("stdout", "é".encode() * PARTIAL_SIZE + b"\n")   # never cut inside a character
    w.write("stdout", b"no newline at exit")
    w.close()
    got = list(read_logs(log))
    assert got[0] == ("stdout", b"abcdef\n")
    assert [len(d) for s, d in got[1:4]] == [PARTIAL_SIZE, PARTIAL_SIZE, 101]
    assert b"".join(d for s, d in got[1:4]) == long_line
    utf = [d for s, d in got[4:-2]]
    assert b"".join(utf) == "é".encode() * PARTIAL_SIZE + b"\n"
    assert all(d.decode() for d in utf)  # each chunk is valid UTF-8 on its own
    assert ("stdout", b"no newline at exit") in got and ("stderr", b"E") in got


def test_invalid_utf8_is_replaced_like_go(tmp_path):
    log = tmp_path / "json.log"
    with JsonLogWriter(log) as w:
        w.write("stdout", b"\xff\xfeok\n")
    assert list(read_logs(log)) == [("stdout", "\ufffd\ufffdok\n".encode())]


def test_rotation_keeps_max_files_and_reads_in_order(tmp_path):
    log = tmp_path / "json.log"
    with JsonLogWriter(log, max_size=2000, max_files=3) as w:
        for i in range(200):
            w.write("stdout", b"line %d\n" % i)
    files = log_files(log)
    assert [f.name for f in files] == ["json.log.2", "json.log.1", "json.log"]
    assert all(f.stat().st_size <= 2000 for f in files)
    got = [int(d.split()[1]) for s, d in read_logs(log)]
    assert got == list(range(got[0], 200)) and got[0] > 0   # the newest, contiguous


def test_max_files_one_truncates(tmp_path):
    log = tmp_path / "json.log"
    with JsonLogWriter(log, max_size=1000, max_files=1) as w:
        for i in range(100):
            w.write("stdout", b"line %d\n" % i)
    assert log_files(log) == [log] and log.stat().st_size <= 1000
    assert list(read_logs(log))[-1] == ("stdout", b"line 99\n")


def test_tail_across_rotated_files(tmp_path):
    log = tmp_path / "json.log"
    with JsonLogWriter(log, max_size=600, max_files=5) as w:
        for i in range(40):
            w.write("stderr" if i % 2 else "stdout", b"n%d\n" % i)
    assert len(log_files(log)) > 2
    for n in (1, 3, 10, 25):
        assert [d for s, d in read_logs(log, tail=n)] == [b"n%d\n" % i for i in range(40 - n, 40)]
    assert list(read_logs(log, tail=0)) == []
    assert len(list(read_logs(log, tail=-1))) == len(list(read_logs(log)))


def test_since_until_and_timestamps(tmp_path):
    log = tmp_path / "json.log"
    clock = Clock(step=1_000_000_000)  # one second per entry
    with JsonLogWriter(log, clock=clock) as w:
        for i in range(5):
            w.write("stdout", b"%d\n" % i)
    t = [e.time_ns for e in read_entries(log)]
    assert [d for s, d in read_logs(log, since=t[2] / 1e9)] == [b"2\n", b"3\n", b"4\n"]
    since_dt = datetime.fromtimestamp(t[3] // 10 ** 9, timezone.utc)
    assert [d for s, d in read_logs(log, since=since_dt)] == [b"3\n", b"4\n"]
    assert [d for s, d in read_logs(log, until=format_time(t[1]))] == [b"0\n", b"1\n"]
    stamped = list(read_logs(log, timestamps=True, tail=1))
    assert stamped == [("stdout", format_time(t[4], fixed=True).encode() + b" 4\n")]
    assert re.match(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z 4\n", stamped[0][1])


def test_copy_logs_splits_streams(tmp_path):
    log = tmp_path / "json.log"
    with JsonLogWriter(log) as w:
        w.write("stdout", b"out1\n")
        w.write("stderr", b"err1\n")
        w.write("stdout", b"out2\n")
    out, err = io.BytesIO(), io.BytesIO()
    copy_logs(log, out, err)
    assert (out.getvalue(), err.getvalue()) == (b"out1\nout2\n", b"err1\n")


def test_threads_write_whole_entries(tmp_path):
    log = tmp_path / "json.log"
    w = JsonLogWriter(log, max_size=50_000, max_files=50)

    def spam(k):
        for i in range(500):
            w.write("stdout" if k % 2 else "stderr", b"t%d-%d\n" % (k, i))
    threads = [threading.Thread(target=spam, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    got = [d for s, d in read_logs(log)]
    assert len(got) == 2000
    for k in range(4):
        mine = [d for d in got if d.startswith(b"t%d-" % k)]
        assert mine == [b"t%d-%d\n" % (k, i) for i in range(500)]


def test_follow_through_rotation_until_stopped(tmp_path):
    log = tmp_path / "json.log"
    w = JsonLogWriter(log, max_size=3000, max_files=20)
    w.write("stdout", b"before\n")
    done = threading.Event()

    def produce():
        for i in range(600):
            w.write("stdout", b"live %d\n" % i)
            if i % 50 == 0:
                time.sleep(0.01)
        w.close()
        done.set()
    t = threading.Thread(target=produce)
    t.start()
    got = list(read_logs(log, follow=True, stop_when=done.is_set, poll_interval=0.01))
    t.join()
    assert len(log_files(log)) > 3
    assert got[0] == ("stdout", b"before\n")
    assert [d for s, d in got[1:]] == [b"live %d\n" % i for i in range(600)]


def test_follow_with_tail_starts_at_the_end(tmp_path):
    log = tmp_path / "json.log"
    w = JsonLogWriter(log)
    for i in range(10):
        w.write("stdout", b"old %d\n" % i)
    stop = threading.Event()
    got = []

    def reader():
        for item in read_logs(log, follow=True, tail=2, stop_when=stop.is_set, poll_interval=0.01):
            got.append(item[1])
    t = threading.Thread(target=reader)
    t.start()
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:   # the tail was read
        time.sleep(0.01)
    w.write("stdout", b"new\n")
    w.close()
    time.sleep(0.1)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert got == [b"old 8\n", b"old 9\n", b"new\n"]


def test_follow_waits_for_a_log_not_yet_created(tmp_path):
    log = tmp_path / "json.log"
    stop = threading.Event()
    got = []
    t = threading.Thread(target=lambda: got.extend(
        read_logs(log, follow=True, stop_when=stop.is_set, poll_interval=0.01)))
    t.start()
    time.sleep(0.05)
    with JsonLogWriter(log) as w:
        w.write("stderr", b"late\n")
    time.sleep(0.05)
    stop.set()
    t.join(5)
    assert got == [("stderr", b"late\n")]


def test_torn_last_line_is_not_returned(tmp_path):
    log = tmp_path / "json.log"
    with JsonLogWriter(log) as w:
        w.write("stdout", b"ok\n")
    with open(log, "ab") as f:
        f.write(b'{"log":"half')
    assert list(read_logs(log)) == [("stdout", b"ok\n")]
    assert list(read_logs(log, tail=5)) == [("stdout", b"ok\n")]


def test_bad_stream_rejected(tmp_path):
    with JsonLogWriter(tmp_path / "l") as w, pytest.raises(ValueError):
        w.write("stdin", b"x")


def test_parse_size_like_docker_log_opts():
    assert parse_size("10m") == 10_000_000
    assert parse_size("1.5k") == 1500
    assert parse_size("2MiB") == 2 * 1024 * 1024
    assert parse_size("300") == 300 and parse_size(42) == 42
    with pytest.raises(LogError):
        parse_size("ten")
