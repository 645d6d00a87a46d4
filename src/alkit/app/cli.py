"""``alkit label``: open a labeling project on a folder of images and serve it; ``alkit label export``."""
from __future__ import annotations

import argparse
import socket
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alkit.errors import AlkitError, ConfigError

if TYPE_CHECKING:
    from alkit.training.config import TrainConfig

PROJECT_KEYS = {"classes", "db", "strategy", "retrain_every", "budget", "image_size", "epochs", "host", "port",
                "token", "lease_seconds", "import_csv", "import_folders", "min_labels", "cold_start",
                "class_balance", "pseudo_labels"}
COLD_STARTS = ("random", "typiclust", "probcover")  # alkit.app.retrain.APP_COLD_STARTS, without importing torch
CLASS_BALANCES = ("none", "reweight", "logit-adjust")  # alkit.training.config.CLASS_BALANCES, likewise
# (type, smallest allowed value) of each option that is a number; None: no lower bound
_NUMBERS: dict[str, tuple[type, float | None]] = {
    "retrain_every": (int, 1), "budget": (int, 1), "epochs": (int, 1), "port": (int, 1), "min_labels": (int, 2),
    "lease_seconds": (float, 1), "pseudo_labels": (int, 0),
}
_STRINGS = ("db", "strategy", "host", "token", "import_csv", "cold_start", "class_balance")


def _check_options(opts: dict[str, Any], where: str) -> None:
    """Every project option of the right type and range, before anything is created."""
    for key, (kind, low) in _NUMBERS.items():
        if key not in opts:
            continue
        value = opts[key]
        ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
        if not ok or (low is not None and value < low):
            rule = "an integer" if kind is int else "a number"
            raise ConfigError(f"{where}: {key} = {value!r} must be {rule} >= {low:g}")
    if "port" in opts and opts["port"] > 65535:
        raise ConfigError(f"{where}: port = {opts['port']} must be a TCP port, 1 to 65535")
    for key in _STRINGS:
        if key in opts and not isinstance(opts[key], str):
            raise ConfigError(f"{where}: {key} = {opts[key]!r} must be a string")
    if "import_folders" in opts and not isinstance(opts["import_folders"], bool):
        raise ConfigError(f"{where}: import_folders = {opts['import_folders']!r} must be true or false")
    if opts.get("cold_start", "random") not in COLD_STARTS:
        raise ConfigError(f"{where}: cold_start = {opts['cold_start']!r} is unknown; choose {', '.join(COLD_STARTS)}")
    if opts.get("class_balance", "none") not in CLASS_BALANCES:
        raise ConfigError(f"{where}: class_balance = {opts['class_balance']!r} is unknown; choose "
                          f"{', '.join(CLASS_BALANCES)}")
    if "strategy" in opts:
        from alkit.strategies import StrategySpec

        try:
            StrategySpec.parse(opts["strategy"]).build()
        except AlkitError as exc:
            raise ConfigError(f"{where}: strategy: {exc}") from None


def add_label_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "label", help="label a folder of images in the browser, with the model choosing what to ask",
        description="alkit label ROOT --classes a,b,c serves the labeling app; "
                    "alkit label export ROOT writes labels.csv, labels.json and predictions.csv.")
    p.add_argument("target", help="the image folder (or 'export')")
    p.add_argument("root", nargs="?", help="with 'export': the image folder")
    p.add_argument("--classes", help="comma-separated class names (needed for a new project)")
    p.add_argument("--project", help="a TOML file with any of: " + ", ".join(sorted(PROJECT_KEYS)))
    p.add_argument("--db", help="project database (default: ROOT/.alkit-labels.sqlite)")
    p.add_argument("--strategy", default=None, help="query strategy, as for alkit run: margin, bald:samples=10, badge, "
                                                 "class-balanced:base=margin, ... (default: margin)")
    p.add_argument("--retrain-every", type=int, default=None, help="retrain after this many new labels (default: 10)")
    p.add_argument("--cold-start", choices=COLD_STARTS, default=None,
                   help="the order before the first model: random, or label-free typiclust / probcover on PCA "
                        "embeddings of the images (default: random)")
    p.add_argument("--min-labels", type=int, default=None,
                   help="random order until this many labels from 2+ classes exist (default: max(10, 2 x classes))")
    p.add_argument("--budget", type=int, default=None, help="label budget shown on the page")
    p.add_argument("--image-size", default=None, help="WxH the model sees (default: 32x32)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per retrain, with the engine's "
                   "rule of at least 50 optimizer steps per epoch (default: 10)")
    p.add_argument("--class-balance", choices=CLASS_BALANCES, default=None,
                   help="for imbalanced folders: the engine's class-balanced loss, reweight or logit-adjust "
                        "(default: none)")
    p.add_argument("--pseudo-labels", type=int, default=None, metavar="N",
                   help="self-training: each retrain also learns from the model's most confident unlabeled images, "
                        "up to this many per predicted class, as alkit run --pseudo-labels (default: 0, off)")
    p.add_argument("--import-csv", help="import labels from a CSV with columns file,label")
    p.add_argument("--import-folders", action="store_true", help="images in ROOT/<class>/ take that class as a label")
    p.add_argument("--host", default=None, help="address to bind (default: 127.0.0.1; others require a token)")
    p.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    p.add_argument("--token", default=None, help="access token (generated when binding beyond loopback)")
    p.add_argument("--lease-seconds", type=float, default=None, help="how long an image stays assigned (default: 300)")
    p.add_argument("--out", help="with 'export': output folder (default: ROOT/alkit-export)")
    p.set_defaults(handler=run_label)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.project:
        path = Path(args.project)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read project file ({exc})") from exc
        unknown = sorted(set(data) - PROJECT_KEYS)
        if unknown:
            raise ConfigError(f"{path}: unknown field(s) {unknown}; allowed: {sorted(PROJECT_KEYS)}")
        _check_options(data, str(path))
        opts.update(data)
    given = {key: getattr(args, key) for key in PROJECT_KEYS
             if getattr(args, key, None) is not None and getattr(args, key) is not False}
    _check_options(given, "alkit label " + ", ".join(f"--{k.replace('_', '-')}" for k in given))
    opts.update(given)
    if isinstance(opts.get("classes"), str):
        opts["classes"] = [c.strip() for c in opts["classes"].split(",") if c.strip()]
    elif "classes" in opts and not (isinstance(opts["classes"], list)
                                    and all(isinstance(c, str) for c in opts["classes"])):
        raise ConfigError(f"classes = {opts['classes']!r} must be a list of names or a comma-separated string")
    size = opts.get("image_size", "32x32")
    try:
        w, h = (int(v) for v in str(size).lower().split("x")) if isinstance(size, str) else size
    except (ValueError, TypeError):
        raise ConfigError(f"--image-size: '{size}' is not WxH, e.g. 32x32") from None
    if not (14 <= w <= 1024 and 14 <= h <= 1024):
        raise ConfigError(f"--image-size: {w}x{h} must be between 14x14 (the reference CNN's smallest) and "
                          "1024x1024")
    opts["image_size"] = (w, h)
    return opts


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run_label(args: argparse.Namespace) -> int:
    from alkit.app.project import LabelProject

    opts = _options(args)
    if args.target == "export":
        if not args.root:
            raise ConfigError("usage: alkit label export ROOT [--db DB] [--out DIR]")
        if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
            raise ConfigError(f"{args.out}: is a file; export writes a folder (labels.csv, labels.json, "
                              "predictions.csv): pass another --out")
        project = LabelProject(args.root, opts.get("classes"), opts.get("db"), create=False)
        paths = project.export(args.out or Path(args.root) / "alkit-export")
        for p in paths.values():
            print(p)
        return 0
    return serve(args.target, opts, quiet=args.quiet)


def train_config(opts: dict[str, Any]) -> TrainConfig:
    """The engine's training configuration for the project's options (``epochs``, ``class_balance``,
    ``pseudo_labels``)."""
    from alkit.training.config import TrainConfig

    return TrainConfig(epochs=int(opts.get("epochs", TrainConfig.epochs)),
                       class_balance=opts.get("class_balance", "none"),
                       pseudo_labels=int(opts.get("pseudo_labels", 0))).validate()


def serve(root: str, opts: dict[str, Any], quiet: bool = False) -> int:
    import uvicorn

    from alkit.app.project import LabelProject
    from alkit.app.retrain import Retrainer
    from alkit.app.server import access_token, create_app

    project = LabelProject(root, opts.get("classes"), opts.get("db"))
    if opts.get("import_csv"):
        print(f"imported {project.import_csv(opts['import_csv'])} labels from {opts['import_csv']}")
    if opts.get("import_folders"):
        print(f"imported {project.import_folder_labels()} labels from class folders")
    host = opts.get("host", "127.0.0.1")
    token = access_token(host, opts.get("token"))
    retrainer = Retrainer(project, strategy=opts.get("strategy", "margin"), image_size=opts["image_size"],
                          retrain_every=int(opts.get("retrain_every", 10)), min_labels=opts.get("min_labels"),
                          cold_start=opts.get("cold_start", "random"),
                          train=train_config(opts))
    if retrainer.ready() and project.model_version() == 0:
        retrainer.request()
    app = create_app(project, retrainer, token=token, lease_seconds=float(opts.get("lease_seconds", 300)),
                     budget=opts.get("budget"))
    port = int(opts.get("port") or free_port(host))
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"alkit label: {project.n_images()} images, {len(project.current_labels())} labeled, "
          f"project database {project.db_path}", flush=True)
    print(f"alkit label: open {url}", flush=True)
    if token:
        print(f"alkit label: access token {token} (send it as the X-Alkit-Token header)", flush=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning" if not quiet else "error")
    uvicorn.Server(config).run()
    return 0


