"""SwanLab and W&B with the real packages in offline modes: where files go, images, failures.

Tests that need the network (online mode with a real key) are impossible here and not written.
"""

from __future__ import annotations

import warnings

import pytest
from PIL import Image

from polx.plugins import load_plugins

TRACKERS = {
    # name: (its folder in the run dir, then inside it: stored images, stored records, stored config)
    "swanlab": ("swanlab", "run-*/media/**/*.png", "run-*/run-*.swanlab", "run-*/files/config.yaml"),
    "wandb": ("wandb", "offline-run-*/files/media/images/*.png", "offline-run-*/run-*.wandb", "offline-run-*/run-*.wandb"),
}


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


def open_logger(plugins, name, run, **options):
    component = plugins.registry.get("logger", name)
    return component.build(component.config_cls(**options), run)


def same_pixels(a, b) -> bool:
    with Image.open(a) as x, Image.open(b) as y:
        return x.convert("RGB").tobytes() == y.convert("RGB").tobytes()


def files_under(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", TRACKERS)
def test_offline_run_stores_config_scalars_and_image_inside_run_dir(plugins, name, run, make_png, tmp_path):
    image = make_png()
    logger = open_logger(plugins, name, run, mode="offline")
    for step in range(3):
        logger.log(step * 10, {"polx_probe_loss": 1.0 / (step + 1)}, {"rollout": str(image)} if step == 1 else {})
    logger.close()

    tracker_dir = run.dir / TRACKERS[name][0]
    assert tracker_dir.is_dir()
    stored = list(tracker_dir.glob(TRACKERS[name][1]))
    assert stored and all(same_pixels(p, image) for p in stored), f"{name} stored no copy of the image: {files_under(tracker_dir)}"
    [records] = tracker_dir.glob(TRACKERS[name][2])
    [config] = tracker_dir.glob(TRACKERS[name][3])
    assert b"polx_probe_loss" in records.read_bytes()  # the scalar reached the tracker's store
    assert run.config["note"].encode() in config.read_bytes()  # so did the resolved config
    assert not any((tmp_path / "cwd").iterdir())  # nothing written beside the run dir


@pytest.mark.parametrize("name", TRACKERS)
def test_default_mode_without_key_is_offline_with_a_notice(plugins, name, run, capsys):
    logger = open_logger(plugins, name, run)  # mode unset, no key, no *_MODE in the environment
    logger.log(1, {"x": 1.0}, {})
    logger.close()
    err = capsys.readouterr().err
    assert f"no {name.upper()}_API_KEY in the environment, logging offline" in err
    assert files_under(run.dir / TRACKERS[name][0])


@pytest.mark.parametrize("name", TRACKERS)
def test_disabled_mode_logs_nothing_and_does_not_fail(plugins, name, run, make_png):
    logger = open_logger(plugins, name, run, mode="disabled")
    logger.log(1, {"x": 1.0}, {"img": str(make_png())})
    logger.close()
    assert not list((run.dir / TRACKERS[name][0]).glob("**/*.png"))


@pytest.mark.parametrize("name", TRACKERS)
def test_bad_images_warn_once_and_scalars_keep_flowing(plugins, name, run, make_png, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    good = make_png("good.png", (10, 200, 10))
    logger = open_logger(plugins, name, run, mode="offline")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3):
            images = {"corrupt": str(corrupt), "missing": str(tmp_path / "gone.png"), "good": str(good)}
            logger.log(step, {"polx_probe_loss": 0.5}, images)  # must not raise
    logger.close()
    messages = [str(w.message) for w in caught if f"{name}: image" in str(w.message)]
    assert len(messages) == 2  # one per bad key, not one per step
    assert any("'corrupt'" in m for m in messages) and any("'missing'" in m for m in messages)
    assert any(same_pixels(p, good) for p in (run.dir / TRACKERS[name][0]).glob(TRACKERS[name][1]))


@pytest.mark.parametrize("name", TRACKERS)
@pytest.mark.timeout(60)
def test_online_without_credentials_fails_fast_instead_of_prompting(plugins, name, run):
    # no key in the environment and no saved login (see conftest): online must fail, not wait on a prompt
    with pytest.raises(Exception, match="(?i)api key|credentials"):
        open_logger(plugins, name, run, mode="online")


def test_secrets_never_reach_the_run_directory(plugins, run, make_png, monkeypatch):
    keys = {"SWANLAB_API_KEY": "swl-dummy-secret-4b1d9e", "WANDB_API_KEY": "wandb-dummy-secret-0c7e21" + "0" * 15}
    for var, value in keys.items():
        monkeypatch.setenv(var, value)
    # the environment asks for online; the config's mode wins, so these runs stay offline
    monkeypatch.setenv("SWANLAB_MODE", "online")
    monkeypatch.setenv("WANDB_MODE", "online")
    loggers = [open_logger(plugins, "json", run)]
    loggers += [open_logger(plugins, name, run, mode="offline") for name in TRACKERS]
    for step in range(2):
        for logger in loggers:
            logger.log(step, {"train_loss": 0.5}, {"rollout": str(make_png())})
    for logger in loggers:
        logger.close()

    assert list((run.dir / "wandb").glob("offline-run-*"))
    files = files_under(run.dir)
    assert run.dir / "logs.json.txt" in files and any(p.name == "config.yaml" for p in files)
    for path in files:
        data = path.read_bytes()
        for value in keys.values():
            assert value.encode() not in data, f"{value} leaked into {path}"


@pytest.mark.parametrize("name", TRACKERS)
def test_a_resumed_run_continues_the_same_tracker_run(plugins, name, run, tmp_path):
    """Two openings of one run directory (a run and its --resume) give the tracker one run id."""
    ids = []
    for step in (1, 2):
        logger = open_logger(plugins, name, run, mode="offline")
        ids.append(logger._run.id)
        logger.log(step, {"polx_probe_loss": float(step)}, {})
        logger.close()
    saved = (run.dir / f".{name}_run_id").read_text().strip()
    assert ids == [saved, saved]
    other = type(run)(dir=tmp_path / "other", name="other", config={})
    logger = open_logger(plugins, name, other, mode="offline")
    assert logger._run.id != saved  # a different polx run is a different tracker run
    logger.close()
