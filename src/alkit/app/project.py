"""A labeling project: the images of a folder and everything people and models said about them.

State lives in one SQLite database (WAL mode) beside the images or at ``--db``. Every
label is committed before the server acknowledges it, leases and the ranked queue are
rows too, so a server killed at any moment restarts with the same labels and queue.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alkit.data.images import IMAGE_SUFFIXES
from alkit.errors import LabelingError

DB_NAME = ".alkit-labels.sqlite"
HOLDOUT_EVERY = 5  # every 5th queue slot is a random held-out image, never chosen by the strategy

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, holdout INTEGER NOT NULL DEFAULT 0,
    corrupt INTEGER NOT NULL DEFAULT 0, error TEXT);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT, image_id INTEGER NOT NULL REFERENCES images(id),
    label TEXT NOT NULL, annotator TEXT NOT NULL, created REAL NOT NULL, model_version INTEGER NOT NULL,
    lease_id TEXT, undone INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS labels_image ON labels(image_id);
CREATE TABLE IF NOT EXISTS skips (image_id INTEGER NOT NULL, annotator TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (image_id, annotator));
CREATE TABLE IF NOT EXISTS leases (
    image_id INTEGER PRIMARY KEY, annotator TEXT NOT NULL, lease_id TEXT NOT NULL, expires REAL NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS queue (image_id INTEGER PRIMARY KEY, rank INTEGER NOT NULL, score REAL);
CREATE TABLE IF NOT EXISTS models (
    version INTEGER PRIMARY KEY, created REAL NOT NULL, n_train INTEGER NOT NULL, n_holdout INTEGER NOT NULL,
    metrics TEXT NOT NULL, strategy TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    image_id INTEGER PRIMARY KEY, label TEXT NOT NULL, confidence REAL NOT NULL, model_version INTEGER NOT NULL);
"""


@dataclass
class Lease:
    image_id: int
    path: str
    lease_id: str
    expires: float
    holdout: bool


def scan_images(root: Path) -> list[str]:
    """Image files under ``root``, recursively, as POSIX paths relative to it.

    Symbolic links that lead outside the folder and the project's own files are left out.
    """
    root_resolved = root.resolve()
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
                continue
            if not p.resolve().is_relative_to(root_resolved):
                continue
            out.append(p.relative_to(root).as_posix())
    return out


class LabelProject:
    def __init__(self, root: str | Path, classes: list[str] | None = None, db: str | Path | None = None,
                 holdout_fraction: float = 1 / HOLDOUT_EVERY, seed: int = 0, create: bool = True) -> None:
        """Open the project of ``root`` (its database ``db``), or with ``create`` start one with ``classes``.
        A refused start leaves nothing behind: the database is created only once its classes are valid."""
        self.root = Path(root)
        if not self.root.is_dir():
            raise LabelingError(f"{self.root}: no such folder of images")
        self.db_path = Path(db) if db else self.root / DB_NAME
        if self.db_path.exists() and not self.db_path.is_file():
            raise LabelingError(f"{self.db_path}: is a folder, not a project database; pass --db FILE")
        if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
            raise LabelingError(f"--classes: expected a comma-separated list of names, got {classes!r}")
        if classes:
            if len(set(classes)) != len(classes) or any(not c.strip() for c in classes):
                raise LabelingError(f"--classes: names must be unique and non-empty, got {classes}")
            if len(classes) < 2:
                raise LabelingError(f"--classes: at least two classes are needed, got {classes}")
        if not self.db_path.exists():
            if not create:
                raise LabelingError(f"{self.root}: no labeling project here ({self.db_path} does not exist); "
                                    "start one with alkit label ROOT --classes a,b")
            if not classes:
                raise LabelingError(f"{self.root}: a new project needs --classes, e.g. --classes cat,dog")
        self._local = threading.local()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            stored = self._meta("classes")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise LabelingError(f"{self.db_path}: not a labeling project database ({exc}); it was left "
                                "unchanged: pass another --db") from None
        if classes:
            if stored is not None and json.loads(stored) != list(classes):
                raise LabelingError(f"{self.db_path}: the project's classes are {json.loads(stored)}, not {classes}; "
                                    "use the same --classes or another --db")
            if stored is None:
                self._set_meta("classes", json.dumps(list(classes)))
        elif stored is None:
            raise LabelingError(f"{self.root}: a new project needs --classes, e.g. --classes cat,dog")
        self.classes: list[str] = json.loads(self._meta("classes") or "[]")
        if len(self.classes) < 2:
            raise LabelingError(f"--classes: at least two classes are needed, got {self.classes}")
        self.sync_images(holdout_fraction, seed)

    # -- low-level ------------------------------------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        """This thread's connection: server threads never share one; SQLite serializes the writers."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=30)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- images ---------------------------------------------------------------------------------------
    def sync_images(self, holdout_fraction: float, seed: int) -> int:
        """Add files that appeared in the folder; new images join the held-out slice at random."""
        paths = scan_images(self.root)
        rng = random.Random(f"{seed}/{len(paths)}")
        with self._tx() as db:
            known = {r[0] for r in db.execute("SELECT path FROM images")}
            new = [p for p in paths if p not in known]
            db.executemany("INSERT INTO images (path, holdout) VALUES (?, ?)",
                           [(p, int(rng.random() < holdout_fraction)) for p in new])
        return len(new)

    def image(self, image_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT id, path, holdout, corrupt FROM images WHERE id=?", (image_id,)).fetchone()
        return dict(zip(("id", "path", "holdout", "corrupt"), row)) if row else None

    def image_by_path(self, rel: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT id, path, holdout, corrupt FROM images WHERE path=?", (rel,)).fetchone()
        return dict(zip(("id", "path", "holdout", "corrupt"), row)) if row else None

    def mark_corrupt(self, image_id: int, error: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE images SET corrupt=1, error=? WHERE id=?", (error[:500], image_id))
            db.execute("DELETE FROM leases WHERE image_id=?", (image_id,))
            db.execute("DELETE FROM queue WHERE image_id=?", (image_id,))

    def n_images(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM images WHERE corrupt=0").fetchone()[0]

    # -- labels -----------------------------------------------------------------------------------------
    def add_label(self, image_id: int, label: str, annotator: str, lease_id: str | None = None) -> int:
        """Record a label (committed before returning). A label on an expired lease is kept."""
        if label not in self.classes:
            raise LabelingError(f"label '{label}' is not a class of this project ({', '.join(self.classes)})")
        if self.image(image_id) is None:
            raise LabelingError(f"image id {image_id} is not in this project")
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO labels (image_id, label, annotator, created, model_version, lease_id) VALUES (?,?,?,?,?,?)",
                (image_id, label, annotator, time.time(), self.model_version(), lease_id))
            db.execute("DELETE FROM leases WHERE image_id=? AND annotator=?", (image_id, annotator))
            return int(cur.lastrowid)

    def skip(self, image_id: int, annotator: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO skips VALUES (?, ?, ?)", (image_id, annotator, time.time()))
            db.execute("DELETE FROM leases WHERE image_id=? AND annotator=?", (image_id, annotator))

    def undo(self, annotator: str, lease_seconds: float = 300) -> Lease | None:
        """Withdraw the annotator's latest label and lease that image back to them."""
        with self._tx() as db:
            row = db.execute("SELECT id, image_id FROM labels WHERE annotator=? AND undone=0 ORDER BY id DESC LIMIT 1",
                             (annotator,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE labels SET undone=1 WHERE id=?", (row[0],))
            image = self.image(row[1])
            lease = Lease(row[1], image["path"], uuid.uuid4().hex, time.time() + lease_seconds, bool(image["holdout"]))
            db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, 1)",
                       (lease.image_id, annotator, lease.lease_id, lease.expires))
            return lease

    def current_labels(self, holdout: bool | None = None) -> dict[int, str]:
        """One label per labeled image: the majority of its labels, the latest winning ties."""
        sql = ("SELECT l.image_id, l.label FROM labels l JOIN images i ON i.id=l.image_id "
               "WHERE l.undone=0 AND i.corrupt=0")
        if holdout is not None:
            sql += f" AND i.holdout={int(holdout)}"
        votes: dict[int, dict[str, int]] = {}
        for image_id, label in self._db.execute(sql + " ORDER BY l.id"):
            v = votes.setdefault(image_id, {})
            v[label] = v.pop(label, 0) + 1  # re-insert so the latest label sorts last among ties
        return {i: max(reversed(list(v.items())), key=lambda kv: kv[1])[0] for i, v in votes.items()}

    def label_rows(self) -> list[dict[str, Any]]:
        cur = self._db.execute(
            "SELECT i.path, l.label, l.annotator, l.created, l.model_version, l.undone, i.holdout "
            "FROM labels l JOIN images i ON i.id=l.image_id ORDER BY l.id")
        return [dict(zip(("file", "label", "annotator", "time", "model_version", "undone", "holdout"), r)) for r in cur]

    def counts(self) -> dict[str, int]:
        counts = {c: 0 for c in self.classes}
        for label in self.current_labels().values():
            counts[label] += 1
        return counts

    # -- leases and the queue ---------------------------------------------------------------------------------
    def lease(self, annotator: str, n: int, lease_seconds: float = 300) -> list[Lease]:
        """Assign up to ``n`` images to ``annotator``, disjoint from every other live lease.

        The annotator's own live leases come back first (a reload does not lose them);
        then the queue order; then any other unlabeled image. Runs in one write transaction.
        """
        now = time.time()
        with self._tx() as db:
            db.execute("DELETE FROM leases WHERE expires < ?", (now,))
            own = db.execute("SELECT l.image_id, i.path, l.lease_id, i.holdout FROM leases l JOIN images i "
                             "ON i.id=l.image_id LEFT JOIN queue q ON q.image_id=l.image_id WHERE l.annotator=? "
                             "ORDER BY l.pinned DESC, q.rank IS NULL, q.rank, l.image_id", (annotator,)).fetchall()
            out = [Lease(r[0], r[1], r[2], now + lease_seconds, bool(r[3])) for r in own[:n]]
            db.executemany("UPDATE leases SET expires=? WHERE image_id=?", [(now + lease_seconds, l.image_id) for l in out])
            if len(out) < n:
                rows = db.execute(
                    "SELECT i.id, i.path, i.holdout FROM images i LEFT JOIN queue q ON q.image_id=i.id "
                    "WHERE i.corrupt=0 "
                    "AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.image_id=i.id AND l.undone=0) "
                    "AND NOT EXISTS (SELECT 1 FROM leases x WHERE x.image_id=i.id) "
                    "AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.image_id=i.id AND s.annotator=?) "
                    "ORDER BY q.rank IS NULL, q.rank, i.id LIMIT ?", (annotator, n - len(out))).fetchall()
                for image_id, path, holdout in rows:
                    lease = Lease(image_id, path, uuid.uuid4().hex, now + lease_seconds, bool(holdout))
                    db.execute("INSERT INTO leases VALUES (?, ?, ?, ?, 0)",
                               (image_id, annotator, lease.lease_id, lease.expires))
                    out.append(lease)
            return out

    def release(self, annotator: str, keep: list[int] | None = None) -> int:
        """Give back the annotator's leases (except ``keep``), e.g. to re-lease from a re-ranked queue."""
        keep = keep or []
        with self._tx() as db:
            cur = db.execute(f"DELETE FROM leases WHERE annotator=? AND image_id NOT IN ({','.join('?' * len(keep))})",
                             (annotator, *keep))
            return cur.rowcount

    def set_queue(self, ranked_ids: list[int], scores: list[float] | None = None) -> None:
        """Replace the queue: ``ranked_ids`` (strategy order) interleaved with random held-out images."""
        with self._tx() as db:
            db.execute("DELETE FROM queue")
            db.executemany("INSERT INTO queue VALUES (?, ?, ?)",
                           [(i, rank, s) for rank, (i, s) in enumerate(zip(ranked_ids, scores or [None] * len(ranked_ids)))])

    def queue(self, limit: int = 50) -> list[int]:
        return [r[0] for r in self._db.execute("SELECT image_id FROM queue ORDER BY rank LIMIT ?", (limit,))]

    def unlabeled_ids(self) -> tuple[list[int], list[int]]:
        """(strategy pool, held-out pool): unlabeled, readable images."""
        rows = self._db.execute(
            "SELECT i.id, i.holdout FROM images i WHERE i.corrupt=0 AND NOT EXISTS "
            "(SELECT 1 FROM labels l WHERE l.image_id=i.id AND l.undone=0) ORDER BY i.id").fetchall()
        return [r[0] for r in rows if not r[1]], [r[0] for r in rows if r[1]]

    # -- models ---------------------------------------------------------------------------------------------------
    def model_version(self) -> int:
        row = self._db.execute("SELECT MAX(version) FROM models").fetchone()
        return int(row[0] or 0)

    def add_model(self, n_train: int, n_holdout: int, metrics: dict[str, Any], strategy: str,
                  predictions: list[tuple[int, str, float]], ranked: list[int], scores: list[float]) -> int:
        with self._tx() as db:
            version = self.model_version() + 1
            db.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?)",
                       (version, time.time(), n_train, n_holdout, json.dumps(metrics), strategy))
            db.execute("DELETE FROM predictions")
            db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?)", [(i, l, c, version) for i, l, c in predictions])
            db.execute("DELETE FROM queue")
            db.executemany("INSERT INTO queue VALUES (?, ?, ?)", [(i, r, s) for r, (i, s) in enumerate(zip(ranked, scores))])
            return version

    def models(self) -> list[dict[str, Any]]:
        cur = self._db.execute("SELECT version, created, n_train, n_holdout, metrics, strategy FROM models ORDER BY version")
        return [{"version": v, "created": c, "n_train": n, "n_holdout": h, "metrics": json.loads(m), "strategy": s}
                for v, c, n, h, m, s in cur]

    def predictions(self) -> list[dict[str, Any]]:
        labeled = set(self.current_labels())
        cur = self._db.execute("SELECT i.path, p.image_id, p.label, p.confidence, p.model_version FROM predictions p "
                               "JOIN images i ON i.id=p.image_id ORDER BY i.path")
        return [{"file": f, "prediction": l, "confidence": c, "model_version": v}
                for f, i, l, c, v in cur if i not in labeled]

    # -- import / export --------------------------------------------------------------------------------------------
    def import_folder_labels(self) -> int:
        """Images inside ``root/<class>/`` take that class as an imported label (once)."""
        current = self.current_labels()
        n = 0
        for image_id, path in self._db.execute("SELECT id, path FROM images").fetchall():
            top = path.split("/", 1)[0] if "/" in path else None
            if top in self.classes and image_id not in current:
                self.add_label(image_id, top, "import:folders")
                n += 1
        return n

    def import_csv(self, path: str | Path) -> int:
        """Import ``file,label`` rows (file relative to the project folder); validated as a whole first.

        Idempotent: a row whose image already has that label is skipped, so importing the same file twice
        adds nothing. Returns the number of labels added."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise LabelingError(f"{path}: cannot read labels ({exc})") from exc
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
            raise LabelingError(f"{path}: line 1: header must have the columns 'file' and 'label', "
                                f"found {reader.fieldnames}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if None in row or row.get("file") is None or row.get("label") is None:
                raise LabelingError(f"{path}: line {line}: malformed row (expected {len(reader.fieldnames)} fields)")
            file, label = row["file"].strip(), row["label"].strip()
            if label not in self.classes:
                raise LabelingError(f"{path}: line {line}: unknown class '{label}' (classes: {', '.join(self.classes)})")
            image = self.image_by_path(file)
            if image is None:
                raise LabelingError(f"{path}: line {line}: file '{file}' is not an image of this project")
            rows.append((image["id"], label))
        current = self.current_labels()
        added = [(i, label) for i, label in rows if current.get(i) != label]
        for image_id, label in added:
            self.add_label(image_id, label, f"import:{path.name}")
        return len(added)

    def export(self, out_dir: str | Path) -> dict[str, Path]:
        """Write labels.csv, labels.json and predictions.csv (latest model, unlabeled images)."""
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise LabelingError(f"{out_dir}: is a file; export writes a folder (labels.csv, labels.json, "
                                "predictions.csv): pass another --out")
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = [r for r in self.label_rows() if not r["undone"]]
        paths = {"labels_csv": out_dir / "labels.csv", "labels_json": out_dir / "labels.json",
                 "predictions_csv": out_dir / "predictions.csv"}
        _write_csv(paths["labels_csv"], ["file", "label", "annotator", "time", "model_version"], rows)
        tmp = paths["labels_json"].with_suffix(".tmp")
        tmp.write_text(json.dumps({"classes": self.classes, "labels": [
            {k: r[k] for k in ("file", "label", "annotator", "time", "model_version")} for r in rows]}, indent=1))
        os.replace(tmp, paths["labels_json"])
        _write_csv(paths["predictions_csv"], ["file", "prediction", "confidence", "model_version"], self.predictions())
        return paths


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


class _Transaction:
    """``with``: one IMMEDIATE (write-locking) transaction; commit on success, else roll back."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
