#!/usr/bin/env python3
"""read_tfevents.py: a TensorBoard log directory as TensorBoard itself reads it, printed as JSON.

Two readers of the `tensorboard` package (no TensorFlow: its stub record reader):
  - "raw": every record of every *tfevents* file, through the stub's PyRecordReader_New, which checks
    both masked CRC-32Cs of each record (a bad one is DataLossError, counted in "errors"; TensorBoard
    itself would silently stop reading the file there), each parsed as a tensorboard.Event;
  - "scalars": tensorboard.backend.event_processing.event_accumulator.EventAccumulator over the
    directory with purge_orphaned_data=True (TensorBoard's default) and no sampling: what the
    Scalars dashboard's Python loader shows, {tag: [[step, value, wall_time], ...]}.
"fields" gives the field numbers of event.proto/summary.proto as the package compiled them, so a
test can check the writer's numbering against the real schema.

usage: read_tfevents.py LOGDIR  (needs `tensorboard`: scripts/setup-interop-venv.sh)
"""
import glob
import json
import os
import sys

from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as pw


def raw_records(path):
    out, err = [], None
    reader = pw.PyRecordReader_New(path)
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            break
        except errors.DataLossError as e:
            err = str(e)
            break
        ev = event_pb2.Event.FromString(reader.record())
        rec = {"step": ev.step, "wall_time": ev.wall_time, "what": ev.WhichOneof("what")}
        if rec["what"] == "file_version":
            rec["file_version"] = ev.file_version
        elif rec["what"] == "session_log":
            rec["status"] = event_pb2.SessionLog.SessionStatus.Name(ev.session_log.status)
        elif rec["what"] == "summary":
            rec["values"] = {v.tag: v.simple_value for v in ev.summary.value if v.WhichOneof("value") == "simple_value"}
        out.append(rec)
    return out, err


def main():
    logdir = sys.argv[1]
    files = sorted(glob.glob(os.path.join(logdir, "*tfevents*")))
    raw, errs = {}, {}
    for f in files:
        recs, err = raw_records(f)
        raw[os.path.basename(f)] = recs
        if err:
            errs[os.path.basename(f)] = err
    acc = ea.EventAccumulator(logdir, size_guidance={ea.SCALARS: 0}, purge_orphaned_data=True)
    acc.Reload()
    scalars = {t: [[e.step, e.value, e.wall_time] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    E, S, V, L = event_pb2.Event, summary_pb2.Summary, summary_pb2.Summary.Value, event_pb2.SessionLog
    fields = {
        "Event.wall_time": E.DESCRIPTOR.fields_by_name["wall_time"].number,
        "Event.step": E.DESCRIPTOR.fields_by_name["step"].number,
        "Event.file_version": E.DESCRIPTOR.fields_by_name["file_version"].number,
        "Event.summary": E.DESCRIPTOR.fields_by_name["summary"].number,
        "Event.session_log": E.DESCRIPTOR.fields_by_name["session_log"].number,
        "Summary.value": S.DESCRIPTOR.fields_by_name["value"].number,
        "Value.tag": V.DESCRIPTOR.fields_by_name["tag"].number,
        "Value.simple_value": V.DESCRIPTOR.fields_by_name["simple_value"].number,
        "SessionLog.status": L.DESCRIPTOR.fields_by_name["status"].number,
        "SessionLog.START": L.START,
    }
    json.dump({"files": [os.path.basename(f) for f in files], "errors": errs, "raw": raw, "scalars": scalars,
               "fields": fields}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
