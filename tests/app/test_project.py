import os
from pathlib import Path

import numpy as np
import pytest
import torch

from alkit.app.project import LabelProject, scan_images
from alkit.app.retrain import Retrainer, interleave_holdout
from alkit.app.server import access_token
from alkit.errors import LabelingError
from alkit.training.config import TrainConfig
from tests.app.conftest import CLASSES, write_photos


def _project(root: Path) -> LabelProject:
    return LabelProject(root, CLASSES)


def test_new_project_needs_classes_and_keeps_them(photos) -> None:
    root, _ = photos
    with pytest.raises(LabelingError, match="a new project needs --classes"):
        LabelProject(root)
    with pytest.raises(LabelingError, match="at least two classes"):
        LabelProject(root, ["coat"])
    assert not (root / ".alkit-labels.sqlite").exists()  # a refused start leaves nothing behind
    p = _project(root)
    assert p.n_images() == 200 and (root / ".alkit-labels.sqlite").exists()
    assert LabelProject(root).classes == CLASSES
    with pytest.raises(LabelingError, match="the project's classes are"):
        LabelProject(root, ["cat", "dog"])


def test_leases_are_disjoint_and_expire(photos) -> None:
    p = _project(photos[0])
    a = p.lease("alice", 10)
    b = p.lease("bob", 10)
    assert len(a) == len(b) == 10 and not {l.image_id for l in a} & {l.image_id for l in b}
    assert [l.image_id for l in p.lease("alice", 10)] == [l.image_id for l in a]  # own leases come back
    short = p.lease("carol", 5, lease_seconds=-1)  # already expired
    assert {l.image_id for l in p.lease("dave", 5)} == {l.image_id for l in short}


def test_label_on_expired_lease_is_kept_and_disagreement_recorded(photos) -> None:
    p = _project(photos[0])
    first = p.lease("alice", 1, lease_seconds=-1)[0]
    again = p.lease("bob", 1)[0]
    assert again.image_id == first.image_id
    p.add_label(first.image_id, "coat", "alice", first.lease_id)
    p.add_label(again.image_id, "shirt", "bob", again.lease_id)
    rows = [r for r in p.label_rows() if r["file"] == first.path]
    assert [(r["annotator"], r["label"]) for r in rows] == [("alice", "coat"), ("bob", "shirt")]
    assert p.current_labels()[first.image_id] == "shirt"  # tie: the latest wins
    p.add_label(first.image_id, "coat", "carol")
    assert p.current_labels()[first.image_id] == "coat"  # majority


def test_undo_and_skip(photos) -> None:
    p = _project(photos[0])
    items = p.lease("alice", 3)
    p.add_label(items[0].image_id, "bag", "alice")
    p.add_label(items[1].image_id, "boot", "alice")
    back = p.undo("alice")
    assert back.image_id == items[1].image_id and items[1].image_id not in p.current_labels()
    assert p.lease("alice", 1)[0].image_id == items[1].image_id
    p.skip(items[2].image_id, "alice")
    assert items[2].image_id not in {l.image_id for l in p.lease("alice", 50)}
    assert items[2].image_id in {l.image_id for l in p.lease("bob", 200)}
    with pytest.raises(LabelingError, match="label 'cat' is not a class"):
        p.add_label(items[0].image_id, "cat", "alice")


def test_import_csv_validation(photos, tmp_path: Path) -> None:
    p = _project(photos[0])
    good = tmp_path / "good.csv"
    good.write_text("file,label\nimg_0000.png,coat\nimg_0001.png,bag\n")
    assert p.import_csv(good) == 2 and p.counts()["coat"] == 1
    assert p.import_csv(good) == 0 and p.counts()["coat"] == 1  # importing the same file again adds nothing
    for text, message in [
        ("name,label\nimg_0002.png,coat\n", "line 1: header must have the columns 'file' and 'label'"),
        ("file,label\nimg_0002.png,cow\n", "line 2: unknown class 'cow'"),
        ("file,label\nimg_0002.png,coat\nmissing.png,coat\n", "line 3: file 'missing.png' is not an image of this project"),
        ("file,label\nimg_0002.png,coat,extra\n", "line 2: malformed row"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(LabelingError, match=message):
            p.import_csv(bad)
    assert len(p.current_labels()) == 2  # a bad file imports nothing


def test_folder_labels_and_symlinks_out_are_ignored(tmp_path: Path) -> None:
    root, _ = write_photos(tmp_path / "p", n=20)
    (root / "coat").mkdir()
    os.replace(root / "img_0000.png", root / "coat" / "a.png")
    outside, _ = write_photos(tmp_path / "outside", n=2)
    (root / "escape.png").symlink_to(outside / "img_0000.png")
    assert "escape.png" not in scan_images(root) and "coat/a.png" in scan_images(root)
    p = _project(root)
    assert p.import_folder_labels() == 1 and p.counts()["coat"] == 1


def test_export_and_predictions(photos, tmp_path: Path) -> None:
    root, truth = photos
    p = _project(root)
    for name, y in list(truth.items())[:60]:
        p.add_label(p.image_by_path(name)["id"], CLASSES[y], "alice")
    r = Retrainer(p, "entropy", image_size=(28, 28), train=TrainConfig(epochs=3, batch_size=32), min_labels=20)
    version = r.train_once()
    assert version == 1 and p.models()[0]["n_train"] + p.models()[0]["n_holdout"] == 60
    paths = p.export(tmp_path / "out")
    assert paths["labels_csv"].read_text().count("\n") == 61
    preds = paths["predictions_csv"].read_text().splitlines()
    assert preds[0] == "file,prediction,confidence,model_version" and len(preds) == 1 + 140
    assert '"classes"' in paths["labels_json"].read_text()


@pytest.mark.parametrize("strategy", ["badge", "bald:samples=4", "class-balanced:base=coreset"])
def test_the_app_queries_through_the_engines_strategies(photos, strategy: str) -> None:
    root, truth = photos
    p = _project(root)
    for name, y in list(truth.items())[:40]:
        p.add_label(p.image_by_path(name)["id"], CLASSES[y], "a")
    r = Retrainer(p, strategy, image_size=(28, 28), retrain_every=5, train=TrainConfig(epochs=1), min_labels=10)
    assert r.train_once() == 1
    pool, holdout = p.unlabeled_ids()
    queue = p.queue(len(pool) + len(holdout))
    assert sorted(queue) == sorted(pool + holdout)  # every unlabeled image is queued once
    assert p.models()[0]["strategy"] == strategy
    if not r.strategy.ranks:
        assert r.batch_size() == 10


@pytest.mark.parametrize("warm_start", [True, False])
def test_retrains_after_the_first_continue_from_the_last_model_as_the_engine_does(
        photos, warm_start: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import alkit.training.self_training as self_training

    starts = []

    def recording_fit(model, *args, **kwargs):
        before = [v.clone() for v in model.state_dict().values()]
        out = real_fit(model, *args, **kwargs)
        starts.append((args[3].epochs, before, [v.clone() for v in model.state_dict().values()]))
        return out

    real_fit = self_training.fit
    monkeypatch.setattr(self_training, "fit", recording_fit)
    root, truth = photos
    p = _project(root)
    items = list(truth.items())
    for name, y in items[:30]:
        p.add_label(p.image_by_path(name)["id"], CLASSES[y], "a")
    r = Retrainer(p, "margin", image_size=(28, 28), min_labels=10,
                  train=TrainConfig(epochs=4, min_steps=8, warm_start=warm_start))
    assert r.train_once() == 1
    first = starts[0][2]
    assert (r._last_state is not None) == warm_start  # nothing kept that will not be used
    for name, y in items[30:45]:
        p.add_label(p.image_by_path(name)["id"], CLASSES[y], "a")
    assert r.train_once() == 2
    assert [e for e, *_ in starts] == ([4, 1] if warm_start else [4, 4])
    continued = all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(starts[1][1], first))
    assert continued == warm_start
    assert [m["metrics"]["warm_start"] for m in p.models()] == [False, warm_start]


def test_pseudo_labels_come_from_the_unlabeled_pool_never_the_held_out_images(
        photos, monkeypatch: pytest.MonkeyPatch) -> None:
    import alkit.training.self_training as self_training

    fits = []

    def recording_fit(model, x, y, indices, *args, **kwargs):
        fits.append((len(x), np.array(indices), np.array(y)[indices]))
        return real_fit(model, x, y, indices, *args, **kwargs)

    real_fit = self_training.fit
    monkeypatch.setattr(self_training, "fit", recording_fit)
    root, truth = photos
    p = _project(root)
    for name, y in list(truth.items())[:30]:
        p.add_label(p.image_by_path(name)["id"], CLASSES[y], "a")
    r = Retrainer(p, "margin", image_size=(28, 28), min_labels=10,
                  train=TrainConfig(epochs=2, min_steps=8, pseudo_labels=2))
    assert r.train_once() == 1
    n_train = len(p.current_labels(holdout=False))
    pool, holdout = p.unlabeled_ids()
    assert holdout and len(fits) == 2
    (x1, idx1, _), (x2, idx2, targets) = fits
    assert x1 == x2 == n_train + len(pool)  # the labeled images and the strategy pool; held-out images never
    assert idx1.tolist() == list(range(n_train))
    n_pseudo = len(idx2) - n_train
    assert 0 < n_pseudo <= 2 * len(CLASSES) and (targets >= 0).all() and idx2.max() >= n_train
    assert p.models()[-1]["metrics"]["pseudo_labels"] == n_pseudo


def test_queue_interleaves_random_holdout() -> None:
    q = interleave_holdout(list(range(10)), [100, 101], np.random.default_rng(0), every=5)
    assert q[4] in (100, 101) and q[9] in (100, 101) and [i for i in q if i < 100] == list(range(10))


def test_corrupt_image_is_marked_and_skipped(photos) -> None:
    root, truth = photos
    (root / "img_0005.png").write_bytes(b"\x89PNG broken")
    p = _project(root)
    for name, y in list(truth.items())[:40]:
        p.add_label(p.image_by_path(name)["id"], CLASSES[y], "a")
    r = Retrainer(p, "margin", image_size=(28, 28), train=TrainConfig(epochs=1), min_labels=10)
    assert r.train_once() == 1
    assert p.image_by_path("img_0005.png")["corrupt"] == 1


def test_token_policy() -> None:
    assert access_token("127.0.0.1", None) is None and access_token("::1", None) is None
    assert access_token("localhost", None) is None
    assert len(access_token("0.0.0.0", None)) > 16 and access_token("192.0.2.1", "given") == "given"
    assert access_token("127.0.0.1", "t") == "t"


def test_the_app_trains_with_the_engines_recipe(photos) -> None:
    r = Retrainer(_project(photos[0]), "margin", image_size=(28, 28))
    assert r.train_cfg == TrainConfig()


@pytest.mark.parametrize("kind", ["typiclust", "probcover"])
def test_label_free_cold_start_puts_its_picks_first(photos, kind: str) -> None:
    from alkit.loop.seeding import numpy_rng
    from alkit.strategies.cold_start import cold_start_set, pca_embedder

    p = _project(photos[0])
    r = Retrainer(p, "margin", image_size=(28, 28), min_labels=12, cold_start=kind)
    pool, holdout = p.unlabeled_ids()
    x, kept = r._arrays(pool)
    picks = {kept[i] for i in cold_start_set(kind, x, 12, numpy_rng(0, 0, "cold-start-set"), pca_embedder, len(CLASSES))}
    queue = p.queue(len(pool) + len(holdout))
    first = [i for i in queue if i not in set(holdout)][:12]
    assert set(first) == picks and sorted(queue) == sorted(pool + holdout)
    random_first = [i for i in Retrainer(_project(photos[0]), "margin", image_size=(28, 28), min_labels=12).project.queue(400)
                    if i not in set(holdout)][:12]
    assert set(random_first) == set(first)  # the queue is stored: a restart keeps the cold-start order


def test_unknown_cold_start_is_refused(photos) -> None:
    from alkit.errors import ConfigError

    with pytest.raises(ConfigError, match="cold_start 'kmeans' is unknown"):
        Retrainer(_project(photos[0]), cold_start="kmeans")


def test_the_cli_offers_the_cold_starts_the_retrainer_takes() -> None:
    from alkit.app.cli import COLD_STARTS
    from alkit.app.retrain import APP_COLD_STARTS

    assert COLD_STARTS == APP_COLD_STARTS


def test_the_cli_offers_the_engines_class_balances(capsys: pytest.CaptureFixture) -> None:
    from alkit.app.cli import CLASS_BALANCES
    from alkit.cli import build_parser
    from alkit.training import config

    assert CLASS_BALANCES == config.CLASS_BALANCES
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--class-balance", "focal"])
    offered = ", ".join(f"'{c}'" for c in config.CLASS_BALANCES)
    assert f"(choose from {offered})" in capsys.readouterr().err  # alkit run offers exactly the engine's


def test_the_apps_options_reach_the_engines_training_config(tmp_path: Path) -> None:
    from alkit.app.cli import _options, train_config
    from alkit.cli import build_parser

    project = tmp_path / "project.toml"
    project.write_text('class_balance = "reweight"\nepochs = 4\n')
    args = build_parser().parse_args(["label", str(tmp_path), "--project", str(project)])
    assert (train_config(_options(args)).class_balance, train_config(_options(args)).epochs) == ("reweight", 4)
    args = build_parser().parse_args(["label", str(tmp_path), "--project", str(project), "--class-balance",
                                      "logit-adjust"])
    assert train_config(_options(args)).class_balance == "logit-adjust"  # the command line wins
    assert train_config(_options(build_parser().parse_args(["label", str(tmp_path)]))).class_balance == "none"
