"""What a command writes: ownership manifests, atomic saves, one writer at a time, and the checks of output paths
against each other and against the inputs, all before any compute.

- **Ownership.** Every output carries a small manifest: for a file `X`, the hidden sibling `.X.vhslab.json`; for a
  folder, `vhslab-output.json` inside it. It records the kind of output (the command and option that write it),
  what wrote it, the file's sha256 and whether it is complete. A command writes only into a path that does not
  exist or that holds its own kind of output, and replaces a complete one only with `--overwrite`. A file whose
  bytes no longer match its manifest (edited or replaced by hand) is no longer ours.
- **Atomic saves.** A file is written to a temporary sibling, flushed to disk and renamed over the target; its
  manifest says "incomplete" until the rename is done, so a killed or disk-full save leaves the previous file
  readable and is reported as "incomplete: rerun to finish or remove it", never as earlier results. A folder
  output (a verifier, a world run) is marked incomplete before its first file and complete after its last.
- **One writer.** `claim` takes an exclusive lock (the `filelock` library: an OS lock, released when the process
  dies, so a killed run never leaves a stale lock) for the command's lifetime, in `$TMPDIR/vhslab-locks/` keyed by
  the output's absolute path (so it guards writers on one machine); a second writer gets a clear error.

Fault injection for tests: `VHSLAB_FAULT=kill:N` (SIGKILL, as `kill -9`) or `enospc:N` (a disk-full OSError)
strikes at the N-th save point of the process (a save point: just before an atomic rename, each line appended to a
resumable log, each training checkpoint); `VHSLAB_FAULT=count` prints at exit how many save points the run passed
(unset, it costs nothing).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from vhslab.errors import ExistsError, InputError, MissingError

MANIFEST = "vhslab-output.json"  # inside a folder output
_LOCKS: list[FileLock] = []
_FAULT = {"count": 0}


class OutputError(ExistsError):
    """An output path that the command may not write (bad input: nothing was computed or changed)."""


class IncompleteError(InputError):
    """An input that a stopped run left half-written."""


@dataclass
class Output:
    """One path a command writes: `kind` names the command and option (e.g. "bestofn --out")."""

    path: Path
    kind: str
    option: str = "--out"
    folder: bool = False
    resumable: bool = False  # an incomplete one is resumed by a rerun (its partial state is kept)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.path = Path(self.path)


# --- manifests --------------------------------------------------------------------------------------------
def manifest_path(path: str | Path, folder: bool | None = None) -> Path:
    """Where the manifest of output `path` lies: inside a folder, beside a file (`.<name>.vhslab.json`)."""
    path = Path(path)
    folder = path.is_dir() if folder is None else folder
    return path / MANIFEST if folder else path.parent / f".{path.name}.vhslab.json"


def read_manifest(path: str | Path) -> dict | None:
    """The manifest of an output, or None where there is none (or it is unreadable)."""
    mp = manifest_path(path)
    try:
        record = json.loads(mp.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "kind" in record else None


def sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(out: Output, complete: bool) -> None:
    """Record who wrote `out` (kind, command line, version) and whether it is complete (with its file's hash)."""
    version = sys.modules["vhslab"].__version__  # the package is loaded before any of its modules
    record = {"kind": out.kind, "complete": complete, "writer": f"vhslab {version}", "argv": sys.argv[1:],
              "folder": out.folder, **out.info}
    if complete and not out.folder:
        record["sha256"] = sha256(out.path)
    if out.folder:
        out.path.mkdir(parents=True, exist_ok=True)
    _atomic_bytes(manifest_path(out.path, out.folder), (json.dumps(record, indent=1) + "\n").encode(), fault=False)


def state(path: str | Path, kind: str | None = None) -> str:
    """'absent', 'complete' or 'incomplete' (ours, of `kind` when given), or 'foreign'."""
    path = Path(path)
    if not path.exists():
        return "absent"
    record = read_manifest(path)
    if record is None or (kind is not None and record["kind"] != kind):
        return "foreign"
    if not record.get("complete"):
        return "incomplete"
    if path.is_file() and record.get("sha256") != sha256(path):
        return "foreign"  # changed by hand since we wrote it
    return "complete"


def check_complete(path: str | Path, what: str = "input") -> None:
    """Refuse an input that a vhslab run left incomplete (inputs without a manifest are the user's own)."""
    record = read_manifest(path)
    if record is not None and not record.get("complete"):
        raise IncompleteError(f"{what} {path} is incomplete (a {record['kind']} run stopped while writing it): "
                              "rerun that command to finish it, or remove it")


# --- claiming outputs before compute ------------------------------------------------------------------------
def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def claim(outputs: list[Output], overwrite: bool = False, inputs: dict[str, str | Path | None] | None = None) -> None:
    """Check every output before any compute and take its lock for this process's command.

    Refuses: two outputs on one path (or one inside the other); an output on, inside or around an input;
    a path holding something this kind of output did not write (never replaced, even with --overwrite);
    a complete output of ours without `overwrite`; a missing or unwritable folder; a path another run is
    writing. An incomplete output of ours is resumed (`resumable`) or replaced."""
    outputs = [o for o in outputs if o.path is not None]
    where = [(o, _resolved(o.path)) for o in outputs]
    for i, (a, pa) in enumerate(where):
        for b, pb in where[i + 1:]:
            if _inside(pa, pb) or _inside(pb, pa):
                raise OutputError(f"{a.option} {a.path} and {b.option} {b.path} are the same path (or one is inside "
                                  "the other); give each output its own path; nothing was changed")
        for name, p in (inputs or {}).items():
            if p is None or str(p) in ("", "default", "none"):
                continue
            pi = _resolved(Path(p))
            if _inside(pa, pi) or _inside(pi, pa):
                raise OutputError(f"{a.option} {a.path} would write over the input {name} {p}; give the output "
                                  "another path; nothing was changed")
    for o in outputs:
        _check_one(o, overwrite)
    for o in outputs:
        _lock(o)
        _check_one(o, overwrite)  # again under the lock: another run may have written it meanwhile
        for stale in o.path.parent.glob(f".{o.path.name}.*.tmp*"):  # left by a killed writer: none is alive now
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def _check_one(o: Output, overwrite: bool) -> None:
    s = state(o.path, o.kind)
    if s == "foreign":
        what = "a folder" if o.path.is_dir() else "a file"
        raise OutputError(f"{o.option} {o.path} exists: {what} that `{o.kind}` did not write (or that was changed since); "
                          "it is never replaced, even with --overwrite: choose another path")
    if s == "complete" and not overwrite:
        raise OutputError(f"{o.option} {o.path} exists and holds an earlier result of `{o.kind}`; nothing was changed "
                          "(pass --overwrite to replace it)")
    if o.path.exists() and o.folder != o.path.is_dir():
        raise OutputError(f"{o.option} {o.path} is a {'file' if o.folder else 'folder'}; give a "
                          f"{'folder' if o.folder else 'file name'}")
    parent = _resolved(o.path).parent
    if not parent.is_dir():
        raise MissingError(f"{o.option} {o.path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{o.option} {o.path}: the folder {parent} is not writable; nothing was computed")


def lock_path(path: str | Path) -> Path:
    """Where the lock of an output lives: a folder of the machine's temporary directory, keyed by the
    output's absolute path, so that nothing but the output and its manifest lands beside it."""
    folder = Path(tempfile.gettempdir()) / "vhslab-locks"
    folder.mkdir(exist_ok=True)
    return folder / (hashlib.sha256(str(_resolved(Path(path))).encode()).hexdigest()[:32] + ".lock")


def _lock(o: Output) -> None:
    lock = FileLock(str(lock_path(o.path)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputError(f"{o.option} {o.path} is being written by another vhslab run (lock {lock.lock_file}); "
                          "wait for it to finish or choose another path") from None
    _LOCKS.append(lock)


@contextlib.contextmanager
def owned(outputs: list[Output], overwrite: bool = False, inputs: dict | None = None):
    """`claim` for a library call: the locks it takes are released when the block ends."""
    before = len(_LOCKS)
    try:
        claim(outputs, overwrite, inputs)
        yield outputs
    finally:
        while len(_LOCKS) > before:
            _LOCKS.pop().release()


def release() -> None:
    """Release every output lock this process took (the CLI does this when a command ends)."""
    while _LOCKS:
        _LOCKS.pop().release()


# --- atomic saves ---------------------------------------------------------------------------------------------
def fault_point() -> None:
    """A save point for fault injection (see the module docstring)."""
    spec = os.environ.get("VHSLAB_FAULT")
    if not spec:
        return
    what, _, n = spec.partition(":")
    _FAULT["count"] += 1
    if what == "count" and _FAULT["count"] == 1:  # how many save points a run passes: said at exit
        import atexit

        atexit.register(lambda: print(f"vhslab save points: {_FAULT['count']}", file=sys.stderr, flush=True))
    if what == "count":
        return
    if _FAULT["count"] != int(n or 1):
        return
    if what == "kill":
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if what == "enospc":
        raise OSError(errno.ENOSPC, "No space left on device (injected by VHSLAB_FAULT)")


@contextlib.contextmanager
def atomic_path(target: str | Path, fault: bool = True):
    """Yield a temporary sibling path to write; on success it is flushed and renamed over `target`, on any
    error removed (the previous `target` stays whole)."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(target))  # mkstemp makes it private: give it the mode a plain open() would
        if fault:
            fault_point()
        os.replace(tmp, target)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a power cut
        finally:
            os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _file_mode(target: Path) -> int:
    return target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask()


def _atomic_bytes(target: Path, data: bytes, fault: bool = True) -> None:
    with atomic_path(target, fault) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(target: str | Path, record, **dumps) -> None:
    """A resumable run's JSON file, replaced whole (a save point)."""
    _atomic_bytes(Path(target), (json.dumps(record, **dumps) + "\n").encode())


@contextlib.contextmanager
def saving(out: Output):
    """Write one output: marked incomplete first, complete last. For a file, yields the temporary path to write
    (renamed over the target at the end); for a folder, the folder itself (its files written by the caller)."""
    if out.folder:
        out.path.mkdir(parents=True, exist_ok=True)
    write_manifest(out, complete=False)
    if out.folder:
        yield out.path
    else:
        with atomic_path(out.path) as tmp:
            yield tmp
    write_manifest(out, complete=True)


@contextlib.contextmanager
def atomic_folder(out: Output):
    """Write a folder output whole: yield a temporary sibling folder to fill; on success it gets its
    complete manifest and takes the target's place (an earlier one of ours is moved aside, then removed);
    on any error it is removed and the target stays as it was."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.path.name}.", suffix=".tmp", dir=out.path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private
    try:
        yield tmp
        write_manifest(Output(tmp, out.kind, out.option, True, info=out.info), complete=True)
        fault_point()
        old = None
        if out.path.exists():
            old = out.path.with_name(f".{out.path.name}.{os.getpid()}.old.tmp")
            os.rename(out.path, old)
        os.rename(tmp, out.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_bytes(out: Output, data: bytes) -> None:
    """Write `data` to the output atomically, with its manifest."""
    with saving(out) as tmp:
        tmp.write_bytes(data)


def save_json(out: Output, record) -> None:
    """Write `record` as indented JSON to the output atomically, with its manifest."""
    save_bytes(out, (json.dumps(record, indent=1) + "\n").encode())


def save_figure(out: Output, fig, dpi: int = 120, **kwargs) -> None:
    """A matplotlib figure (or a PIL image) in the format of the target's suffix."""
    fmt = out.path.suffix.lstrip(".").lower() or "png"
    with saving(out) as tmp:
        if hasattr(fig, "savefig"):
            fig.savefig(tmp, dpi=dpi, format=fmt, **{"bbox_inches": "tight", **kwargs})
        else:
            fig.save(tmp, format={"jpg": "jpeg"}.get(fmt, fmt))


def save_netcdf(out: Output, ds) -> None:
    """Write the dataset `ds` as netCDF to the output atomically, with its manifest."""
    with saving(out) as tmp:
        ds.to_netcdf(tmp)


def append_line(path: Path, line: str) -> None:
    """Append one line to a resumable log and flush it to disk (a save point)."""
    fault_point()
    with open(path, "a") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path, warn=None) -> list[dict]:
    """The records of a resumable JSONL log; a torn or damaged line (a run killed while writing it) is
    dropped with a warning naming the file and line, and the file is rewritten without it."""
    path = Path(path)
    if not path.exists():
        return []
    kept, dropped = [], []
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            dropped.append(i)
            continue
        (kept.append(record) if isinstance(record, dict) else dropped.append(i))
    if dropped:
        (warn or _warn)(f"{path}: dropped damaged line(s) {', '.join(map(str, dropped))} (a run stopped while "
                        "writing them); they are computed again")
        _atomic_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode(), fault=False)
    return kept


def read_resumable_json(path: Path, warn=None):
    """A resumable run's JSON file, or None (with a warning naming the file) if it is damaged."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        (warn or _warn)(f"{path}: damaged ({type(err).__name__}); it is computed again")
        return None


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)
