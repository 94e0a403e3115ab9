"""The results file of a sweep (``python -m unlearnkit bench --out FILE``): read, checked, appended.

* **Formats**: ``.csv``, ``.jsonl`` or ``.parquet``. Every write goes to a temporary file beside
  it, then renames it over the file: a crash leaves the old file or the new one, never half a row.
* **Never overwritten by accident**: an existing file that is not a results file (no ``task``,
  ``forget``, ``seed``, ``method`` and ``config`` columns) is refused and left byte for byte as it
  was; a damaged one (a line cut short, a Parquet file cut short, a row without its key) is
  refused with a message saying how to recover.
* **One owner**: a sweep owns its file while it runs, through an OS lock on ``FILE.lock``
  (``fcntl.flock``; the lock file holds the owner's process id and is removed when the sweep
  ends). A second sweep on the same file is refused with a message naming the file, the lock
  and the owner. A lock whose process has died is taken over at once (the OS releases a lock
  when its process ends, however it ends). Where ``fcntl`` is missing (Windows), the lock file
  is created exclusively and a leftover one must be deleted by hand.
* **No duplicates**: a row whose run key (task, forget, seed, method) and code are already in
  the file is not appended again; a row of the same run made by other code replaces the old
  one. Reading a file that holds duplicates anyway (e.g. edited by hand) keeps the last row of
  each run key, i.e. the one written last.
* **Code**: every row carries a ``config`` column (the fingerprint of the sweep's configuration;
  a file of another configuration is refused) and a ``code`` column (the hash of the code that
  made it, :func:`unlearnkit.fingerprint.run_code`: the method's module and the modules it
  imports, plus the shared training and evaluation code). A resume counts only rows of the
  current code as done and redoes the others; :func:`current` keeps the rows of the current
  code, and the tables (:func:`unlearnkit.sweep.ranking`) refuse rows made by older code.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from pathlib import Path

import pandas as pd

KEYS = ["task", "forget", "seed", "method"]
REQUIRED = KEYS + ["config"]
REFERENCE = "reference"  # the run that yields the original and retrain rows
FORMATS = (".csv", ".jsonl", ".parquet")


class SweepError(ValueError):
    """A sweep was asked for something it cannot do (unknown method or task, a method on a task
    it does not fit, a results file of another configuration, a file that is not a results file
    or is damaged or in use by another sweep)."""


def _format(path: Path) -> str:
    suf = path.suffix.lower()
    if suf not in FORMATS:
        raise SweepError(f"Results file {path}: use a .csv, .jsonl or .parquet name.")
    if suf == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise SweepError(
                "Writing .parquet needs pyarrow: pip install pyarrow (or the extra: "
                "pip install 'unlearnkit[scale]'), or write to a .csv or .jsonl file."
            ) from None
    return suf


# ----------------------------------------------------------------------------- reading


def _foreign(path: Path, why: str) -> SweepError:
    return SweepError(
        f"{path} exists and is not a results file of `python -m unlearnkit bench` ({why}). "
        f"It was left as it is: choose another --out, or move that file away."
    )


def _damaged(path: Path, why: str) -> SweepError:
    line = (
        "open it and delete its last, partial line (the runs on it are redone on the next resume), "
        if path.suffix.lower() != ".parquet"
        else ""
    )
    return SweepError(
        f"{path} is damaged: {why}. It was left as it is. To recover, restore it from a "
        f"backup, {line}or move it away (e.g. mv {path} {path}.damaged) and run again, "
        f"which starts afresh."
    )


def _or(names) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _first_line(path: Path) -> str:
    with open(path, "rb") as f:
        return f.readline().decode("utf-8", "replace").strip()


def _parse(path: Path, suf: str) -> pd.DataFrame:
    if suf == ".parquet":
        with open(path, "rb") as f:
            if f.read(4) != b"PAR1":
                raise _foreign(path, "no Parquet header")
        try:
            return pd.read_parquet(path)
        except Exception as e:
            raise _damaged(
                path, f"it cannot be read as Parquet, probably cut short ({type(e).__name__}: {e})"
            ) from None
    if suf == ".csv":
        header = [c.strip().strip('"') for c in _first_line(path).split(",")]
        try:
            return pd.read_csv(path, dtype={"forget": str, "error": str}, keep_default_na=True)
        except Exception as e:
            if set(REQUIRED) <= set(header):
                raise _damaged(path, f"it cannot be read as CSV ({type(e).__name__}: {e})") from None
            raise _foreign(path, f"it cannot be read as CSV: {type(e).__name__}") from None
    try:
        first = json.loads(_first_line(path))
    except ValueError:
        first = None
    if not isinstance(first, dict) or not set(REQUIRED) <= set(first):
        raise _foreign(path, f"its first line is not a JSON object with the columns {', '.join(REQUIRED)}")
    try:
        return pd.read_json(path, lines=True, dtype={"forget": str})
    except Exception as e:
        raise _damaged(
            path, f"a line cannot be read as JSON, probably the last one cut short ({type(e).__name__}: {e})"
        ) from None


def read_results(path: str | Path) -> pd.DataFrame:
    """The rows of a results file (an empty table if it does not exist yet). :class:`SweepError`
    if the file is not a results file or is damaged; duplicate rows of one run key keep the last."""
    path = Path(path)
    suf = _format(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    df = _parse(path, suf)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise _foreign(path, f"it has no {_or(missing)} column")
    if suf == ".csv":
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) not in (b"\n", b"\r"):
                raise _damaged(path, "its last line is cut short (every row ends with a new line)")
    bad = df[REQUIRED].isna().any(axis=1)
    if bad.any():
        raise _damaged(
            path,
            f"{int(bad.sum())} rows lack their {_or(REQUIRED)} (row "
            f"{int(bad.to_numpy().argmax()) + 1} is the first)",
        )
    df["forget"] = df["forget"].astype(str)
    try:
        df["seed"] = df["seed"].astype(int)
    except (TypeError, ValueError):
        raise _damaged(path, "its seed column holds something other than whole numbers") from None
    if "error" in df.columns:
        df["error"] = df["error"].fillna("").astype(str)
    if "diverged" in df.columns:
        df["diverged"] = df["diverged"].astype(bool)
    return df.drop_duplicates(KEYS, keep="last").reset_index(drop=True)


# ----------------------------------------------------------------------------- writing


def _write(df: pd.DataFrame, path: Path) -> None:
    suf = _format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if suf == ".csv":
            df.to_csv(tmp, index=False)
        elif suf == ".jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            df.to_parquet(tmp, index=False)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it private; a results file is not
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_HELD: dict = {}  # results files this process owns: path -> depth


def lock_path(path: str | Path) -> Path:
    return Path(str(path) + ".lock")


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def _busy(path: Path, lock: Path, stale_hint: bool = False) -> SweepError:
    hint = (
        f" If no sweep is running, {_holder(lock)} ended without removing it: delete {lock}."
        if stale_hint
        else ""
    )
    return SweepError(
        f"{path} is in use by another sweep ({_holder(lock)} holds the lock {lock}). Wait "
        f"for it to finish, then run this command again to resume, or write to another "
        f"--out.{hint}"
    )


def _acquire(path: Path, lock: Path) -> int:
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: an exclusive lock file, no stale rule
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            raise _busy(path, lock, stale_hint=True) from None
    else:
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise _busy(path, lock) from None
                raise
            try:  # the previous owner may have removed the file meanwhile
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextlib.contextmanager
def own(path: str | Path):
    """Own the results file ``path`` for the duration of a ``with`` block (re-entrant within a
    process): :class:`SweepError` at once if another process owns it."""
    path = Path(path)
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    lock = lock_path(path)
    fd = _acquire(path, lock)
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        try:
            os.unlink(lock)  # while still locked: a waiting process then re-checks
        except OSError:
            pass
        os.close(fd)


def _code(v) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _keys(df: pd.DataFrame) -> list:
    return [(t, str(f), int(s), m) for t, f, s, m in zip(df["task"], df["forget"], df["seed"], df["method"])]


def _codes(df: pd.DataFrame) -> list:
    return [_code(c) for c in df["code"]] if "code" in df.columns else [None] * len(df)


def append_rows(path: str | Path, rows: list[dict]) -> None:
    """Append ``rows`` to the results file atomically (read, add, write a temporary file, rename).
    A row whose run key and code are already in the file is skipped; one whose run key is there
    with other code replaces the old row."""
    path = Path(path)
    with own(path):
        old = read_results(path)
        new = pd.DataFrame(rows)
        if not len(new):
            return
        new = new.drop_duplicates(KEYS, keep="last")
        if len(old):
            have = set(zip(_keys(old), _codes(old)))
            new = new[[k not in have for k in zip(_keys(new), _codes(new))]]
            if not len(new):
                return
            redone = set(_keys(new))
            old = old[[k not in redone for k in _keys(old)]]
        df = pd.concat([old, new], ignore_index=True) if len(old) else new
        _write(df, path)


# ----------------------------------------------------------------------------- checking


def check_results(path: str | Path, cfg) -> pd.DataFrame:
    """The existing rows of ``path``; :class:`SweepError` if they belong to another configuration
    (``cfg.fingerprint``), or the file is not a results file, or is damaged."""
    df = read_results(path)
    if len(df):
        other = sorted(set(df["config"].astype(str)) - {cfg.fingerprint})
        if other:
            raise SweepError(
                f"{path} holds results of another configuration (fingerprint {other[0]}, this "
                f"sweep is {cfg.fingerprint}): dataset, model, training, task sizes, "
                f"hyper-parameters or profile differ. Write to a new file, or delete it."
            )
    return df


def is_current(df: pd.DataFrame) -> pd.Series:
    """Per row: was it made by the code this process runs (its ``code`` is the current
    :func:`~unlearnkit.fingerprint.run_code` of its method)?"""
    from .fingerprint import run_code

    return pd.Series(
        [c is not None and c == run_code(m) for m, c in zip(df["method"], _codes(df))],
        index=df.index,
        dtype=bool,
    )


def current(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of a results table made by the current code (see :func:`is_current`)."""
    return df[is_current(df)] if len(df) else df


def done_keys(df: pd.DataFrame, current_only: bool = True) -> set:
    """Keys of the runs already in a results table (a reference run counts once its retrain row
    is in); with ``current_only``, only rows made by the current code count."""
    if not len(df):
        return set()
    if current_only:
        df = current(df)
    return {(t, f, s, REFERENCE if m == "retrain" else m) for t, f, s, m in _keys(df)}


def stale_message(df: pd.DataFrame, where: str = "These results") -> str | None:
    """``None`` if every row of ``df`` was made by the current code, else what to do about it."""
    if not len(df):
        return None
    old = df[~is_current(df)]
    if not len(old):
        return None
    methods = ", ".join(dict.fromkeys(old["method"]))
    return (
        f"{where} hold {len(old)} rows made by older code (of {methods}): the code has changed since "
        f"they ran, so their numbers may not be what it gives now. Run the same sweep again (the "
        f"same `python -m unlearnkit bench` command) to redo only those runs, or write to a new "
        f"--out; unlearnkit.results.current(df) keeps the rows of the current code."
    )
