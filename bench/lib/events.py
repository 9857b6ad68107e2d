#!/usr/bin/env python3
"""Read a tranche --events file (one JSON object a line, README "Events") for the benchmark.

  events.py baseline EVENTS HANDSHAKE_MS
      "unavoidable waits": per batch, the slowest host's stop + start + health (step_finished
      ms), summed over batches, plus HANDSHAKE_MS (one SSH handshake on the critical path).
  events.py stage EVENTS
      wall time of the stage phase: first stage step_started to last stage step_finished.
  events.py steps EVENTS
      per step: count, statuses, median and max ms (what looked slow).
  events.py timeline EVENTS
      per batch: start and length, when its hosts' stage ended, its slowest stop+start+health.
  events.py upload EVENTS WATCH_FILE
      with stagewatch.py's output: first stage step_started to the last upload done.
  events.py run EVENTS [JOURNAL]
      the release1000 figures: hosts ok, batches, the most stage steps running at once (a sweep
      over stage step_started/step_finished), events written a second (over the run and the
      busiest second), and with JOURNAL (the run's journal.jsonl) its records and how far its
      last record trails the last event.
Prints `key value` lines.
"""
import json
import statistics
import sys
from collections import defaultdict
from datetime import datetime


def load(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def ts(e):
    return datetime.strptime(e["ts"].replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def baseline(evs, handshake_ms):
    per = defaultdict(lambda: defaultdict(int))  # batch -> host -> ms
    for e in evs:
        if e.get("type") == "step_finished" and e.get("step") in ("stop", "start", "health"):
            per[e.get("batch")][e.get("host")] += int(e.get("ms", 0))
    waits = sum(max(h.values()) for h in per.values()) if per else 0
    print(f"batches {len(per)}")
    print(f"slowest_stop_start_health_ms {waits}")
    print(f"handshake_ms {handshake_ms:.0f}")
    print(f"baseline_ms {waits + handshake_ms:.0f}")


def stage(evs):
    starts = [ts(e) for e in evs if e.get("type") == "step_started" and e.get("step") == "stage"]
    ends = [e for e in evs if e.get("type") == "step_finished" and e.get("step") == "stage"]
    if not starts or not ends:
        print("stage_ms nan")
        return
    print(f"stage_ms {(max(ts(e) for e in ends) - min(starts)) * 1000:.0f}")
    print(f"stage_ok {sum(1 for e in ends if e.get('status') == 'ok')}")
    print(f"stage_step_ms_max {max(int(e.get('ms', 0)) for e in ends)}")
    print(f"stage_step_ms_median {statistics.median(int(e.get('ms', 0)) for e in ends):.0f}")


def steps(evs):
    by = defaultdict(list)
    status = defaultdict(lambda: defaultdict(int))
    for e in evs:
        if e.get("type") == "step_finished":
            by[e["step"]].append(int(e.get("ms", 0)))
            status[e["step"]][e.get("status")] += 1
    for step, ms in by.items():
        st = ",".join(f"{k}:{v}" for k, v in sorted(status[step].items()))
        print(f"step_{step} n={len(ms)} {st} median_ms={statistics.median(ms):.0f} max_ms={max(ms)}")
    fin = [e for e in evs if e.get("type") == "run_finished"]
    if fin:
        f = fin[-1]
        print("run_finished " + json.dumps({k: v for k, v in f.items() if k not in ("v", "ts", "run", "type")}))


def timeline(evs):
    t0 = ts(evs[0])
    stage_end, batch_of, sss = {}, {}, defaultdict(int)
    bstart, bend = {}, {}
    for e in evs:
        if e.get("type") == "step_finished":
            batch_of[e["host"]] = e.get("batch")
            if e["step"] == "stage":
                stage_end[e["host"]] = ts(e) - t0
            if e["step"] in ("stop", "start", "health"):
                sss[e["host"]] += int(e.get("ms", 0))
        elif e.get("type") == "batch_started":
            bstart[e["batch"]] = ts(e) - t0
        elif e.get("type") == "batch_finished":
            bend[e["batch"]] = ts(e) - t0
    parts = []
    for b in sorted(bstart):
        hs = [h for h, x in batch_of.items() if x == b]
        st = [stage_end[h] for h in hs if h in stage_end]
        parts.append(
            f"batch {b}: {bstart[b]:.1f}-{bend.get(b, float('nan')):.1f}s"
            + (f", its hosts staged by {max(st):.1f}s" if st else "")
            + f", slowest stop+start+health {max((sss[h] for h in hs), default=0) / 1000:.1f}s"
        )
    print("timeline " + "; ".join(parts))


def upload(evs, watch):
    starts = [ts(e) for e in evs if e.get("type") == "step_started" and e.get("step") == "stage"]
    done = []
    with open(watch) as f:
        for line in f:
            done.append(float(line.split()[1]))
    if not starts or not done:
        print("upload_ms nan\nupload_hosts 0")
        return
    print(f"upload_ms {(max(done) - min(starts)) * 1000:.0f}")
    print(f"upload_hosts {len(done)}")


def run(evs, journal=None):
    fin = [e for e in evs if e.get("type") == "host_finished"]
    print(f"hosts_finished {len(fin)}")
    print(f"hosts_ok {sum(1 for e in fin if e.get('status') == 'ok')}")
    print(f"batches {len({e.get('batch') for e in evs if e.get('type') == 'batch_finished'})}")
    # stage steps running at once: +1 at step_started, -1 at step_finished; at equal times the
    # ends count first, so that a slot handed over in the same millisecond is not counted twice
    marks = []
    for e in evs:
        if e.get("step") == "stage" and e.get("type") in ("step_started", "step_finished"):
            marks.append((ts(e), 0 if e["type"] == "step_finished" else 1))
    cur = peak = 0
    for _, kind in sorted(marks):
        cur += 1 if kind else -1
        peak = max(peak, cur)
    print(f"max_concurrent_stages {peak}")
    t = sorted(ts(e) for e in evs)
    span = (t[-1] - t[0]) if len(t) > 1 else 0
    print(f"events {len(evs)}")
    print(f"events_span_s {span:.1f}")
    print(f"events_per_s {len(evs) / span if span else 0:.0f}")
    per_s = defaultdict(int)
    for x in t:
        per_s[int(x)] += 1
    print(f"events_peak_per_s {max(per_s.values()) if per_s else 0}")
    if journal:
        j = load(journal)
        print(f"journal_records {len(j)}")
        if j and t:
            print(f"journal_lag_ms {(t[-1] - max(ts(e) for e in j)) * 1000:.0f}")


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    evs = load(path)
    if cmd == "baseline":
        baseline(evs, float(sys.argv[3]))
    elif cmd == "stage":
        stage(evs)
    elif cmd == "steps":
        steps(evs)
    elif cmd == "timeline":
        timeline(evs)
    elif cmd == "upload":
        upload(evs, sys.argv[3])
    elif cmd == "run":
        run(evs, sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
