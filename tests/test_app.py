"""The web app (mgan.app, README "App"): its engine in-process at 64 px, and the page in a real browser.

The in-process tests check what each control of the page passes to the decoder, the
messages a bad upload gets, the decoder cache and the temporary folder; they import
no Gradio. The end-to-end test serves the page in a subprocess on a free loopback port
and drives it with Debian's Chromium through Playwright; it skips, with the reason,
where Gradio, Playwright or a Chromium binary is missing.
"""

from __future__ import annotations

import importlib.util
import io as _io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED, smooth_image
from PIL import Image

from mgan import app, decode, io, video
from mgan.generator import Generator, GeneratorConfig, save_release

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache() -> app.DecoderCache:
    return app.DecoderCache(device="cpu", precision="fp32")




class Spy:
    """Records what the app passes to :meth:`mgan.decode.Decoder.decode`, then decodes for real."""

    def __init__(self, decoder: decode.Decoder) -> None:
        self.decoder, self.calls = decoder, []

    def decode(self, image: torch.Tensor, tileable: bool = False, progress: bool = False,
               postprocess: str | None = None) -> torch.Tensor:
        self.calls.append({"shape": tuple(image.shape), "tileable": tileable, "progress": progress,
                           "postprocess": postprocess})
        return self.decoder.decode(image, tileable=tileable, postprocess=postprocess)


def _ui(**kw) -> dict:
    """The page's values for a photo job, with ``kw`` changed (the order of job_from_ui's arguments)."""
    values = {"source": app.SOURCES[0], "upload": None, "noise": "perlin", "seed": 0, "tileable": False,
              "model_name": "picasso", "model_upload": None, "size": 64.0}
    values.update(kw)
    return values


# ----------------------------------------------------------------------------- controls -> job -> decoder


def test_photo_controls_reach_the_decoder(tiny_release, cache, photo_file, tmp_path):
    job = app.job_from_ui(**_ui(upload=str(photo_file), model_upload=str(tiny_release), strength=0.5, preserve_colors=True))
    assert (job.source, job.upload, job.model, job.model_name, job.size) == ("upload", photo_file, tiny_release, "tiny", 64)
    assert (job.strength, job.preserve_colors, job.mask) == (0.5, True, None)
    spy = Spy(cache.get(tiny_release))
    seen = []
    result = app.run_job(job, spy, tmp_path, progress=lambda f, what: seen.append(f))
    assert spy.calls == [{"shape": (1, 3, 48, 64), "tileable": False, "progress": True, "postprocess": "auto"}]
    assert (result.kind, result.width, result.height) == ("image", 64, 48)
    assert io.probe_image(result.path) == (64, 48) and result.path.parent == tmp_path
    assert seen and result.seconds > 0
    assert "64x48 PNG" in app.summary(result, 0.0, job.model_name)


def test_size_zero_keeps_the_photo_and_strength_zero_gives_it_back(tiny_release, cache, photo_file, tmp_path):
    job = app.job_from_ui(**_ui(upload=str(photo_file), model_upload=str(tiny_release), size=0, strength=0.0))
    result = app.run_job(job, cache.get(tiny_release), tmp_path)
    out = io.load_image(result.path)
    assert out.shape[-2:] == (48, 64)
    assert (out - io.load_image(photo_file)).abs().max() < 1 / 255 + 1e-6  # 8-bit round trip


def test_mask_is_passed_to_the_controls(tiny_release, cache, photo_file, tmp_path):
    black = io.save_image(torch.zeros(1, 3, 8, 8), tmp_path / "mask.png")  # black: keep the photo everywhere
    job = app.job_from_ui(**_ui(upload=str(photo_file), model_upload=str(tiny_release), mask=str(black)))
    assert job.mask == black
    out = io.load_image(app.run_job(job, cache.get(tiny_release), tmp_path).path)
    assert (out - io.load_image(photo_file)).abs().max() < 1 / 255 + 1e-6


def test_noise_controls_reach_the_decoder(tiny_release, cache, tmp_path):
    job = app.job_from_ui(**_ui(source="Noise", noise="brown", seed=7.0, tileable=True, size=70,
                                model_upload=str(tiny_release), strength=0.2))
    assert (job.source, job.noise, job.seed, job.tileable, job.size, job.strength) == ("noise", "brown", 7, True, 64, 1.0)
    spy = Spy(cache.get(tiny_release))
    a = io.load_image(app.run_job(job, spy, tmp_path).path)
    b = io.load_image(app.run_job(job, cache.get(tiny_release), tmp_path).path)
    assert spy.calls == [{"shape": (1, 3, 64, 64), "tileable": True, "progress": False, "postprocess": "auto"}]
    assert torch.equal(a, b)  # same seed, same texture
    assert app.job_from_ui(**_ui(source="Noise", size=0)).size == app.DEFAULT_SIZE


def test_palette_box_chooses_the_post_process(tiny_release, cache, photo_file, tmp_path):
    """Ticked (default): the decoder's default post-process; unticked: G's own output, the
    same pixels as ``mgan.decode --postprocess none``; the cached decoder is not changed."""
    on = app.job_from_ui(**_ui(upload=str(photo_file), model_upload=str(tiny_release)))
    off = app.job_from_ui(**_ui(upload=str(photo_file), model_upload=str(tiny_release), palette=False))
    assert (on.postprocess, off.postprocess) == ("auto", "none")
    dec = cache.get(tiny_release)
    a = io.load_image(app.run_job(on, dec, tmp_path / "a").path)
    b = io.load_image(app.run_job(off, dec, tmp_path / "b").path)
    raw = decode.Decoder(tiny_release, device="cpu", postprocess="none").decode(io.load_image(photo_file))
    assert (b - raw).abs().max() < 1 / 255 + 1e-3 and (a - b).abs().max() > 0.05
    assert dec.postprocess == "minmax"  # the tiny G carries no painting colours: auto is minmax
    noise = app.job_from_ui(**_ui(source="Noise", model_upload=str(tiny_release), palette=False))
    assert noise.postprocess == "none"


def test_bundled_style_is_the_default(photo_file):
    job = app.job_from_ui(**_ui(upload=str(photo_file), model_name=None))
    assert job.model == decode.DEFAULT_MODEL and next(iter(app.bundled_models())) == "picasso"


def test_video_is_decoded_frame_by_frame_with_progress(tiny_release, cache, tmp_path):
    clip = tmp_path / "clip.mp4"
    writer = video.VideoWriter(clip, 8)
    for i in range(4):
        writer.write(smooth_image(i, 48, 64))
    writer.close()
    assert "4 frames" in app.check_upload(clip)
    job = app.job_from_ui(**_ui(upload=str(clip), model_upload=str(tiny_release), size=0))
    spy, seen = Spy(cache.get(tiny_release)), []
    result = app.run_job(job, spy, tmp_path, progress=lambda f, what: seen.append(f))
    assert (result.kind, result.frames, result.width, result.height) == ("video", 4, 64, 48)
    assert len(spy.calls) == 4 and seen[-1] == 1.0 and result.path.suffix == ".mp4"
    with pytest.raises(io.InputError, match="clip.mp4 has 4 frames; the app decodes videos of up to 3"):
        app.run_job(job, spy, tmp_path, app.Limits(max_frames=3))


# ----------------------------------------------------------------------------- bad input: one clear sentence


@pytest.mark.parametrize(("values", "message"), [
    ({}, "upload a photo or a short video first"),
    ({"upload": "p.png", "size": 10000}, "Output size must be between 64 and 2048"),
    ({"upload": "p.png", "size": None}, "Output size is empty"),
    ({"upload": "p.png", "size": 100.5}, "Output size must be a whole number"),
    ({"upload": "p.png", "model_name": "nope"}, "unknown style 'nope'"),
    ({"upload": "p.png", "strength": 1.5}, r"Strength must be in \[0, 1\]"),
    ({"source": "Noise", "seed": -1}, "Seed must be between 0"),
    ({"source": "Camera"}, "choose the input"),
])
def test_bad_page_values(values, message):
    with pytest.raises(io.InputError, match=message):
        app.job_from_ui(**_ui(**values))


def _truncated_png(path: Path) -> Path:
    buf = _io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def test_bad_uploads_get_one_sentence_with_the_users_file_name(tiny_release, cache, photo_file, tmp_path):
    upload_dir = tmp_path / "uploads" / "0123abcd"  # the app's temporary path must not show
    upload_dir.mkdir(parents=True)
    text = upload_dir / "notes.png"
    text.write_text("not an image")
    cases = [
        (text, app.Limits(), "notes.png: not an image file"),
        (_truncated_png(upload_dir / "cut.png"), app.Limits(), "cut.png: cannot decode image .* truncated or corrupt"),
        (photo_file, app.Limits(max_pixels=1000), r"photo.png is 64x48 \(0 MP\); the app accepts images up to 0 MP"),
    ]
    decoder = cache.get(tiny_release)
    for path, limits, message in cases:
        with pytest.raises(io.InputError, match=message) as err:
            app.check_upload(path, limits)
        assert str(tmp_path) not in str(err.value)
        job = app.job_from_ui(**_ui(upload=str(path), model_upload=str(tiny_release)))
        with pytest.raises(io.InputError, match=message) as err:
            app.run_job(job, decoder, tmp_path, limits)
        assert str(tmp_path) not in str(err.value) and "\n" not in str(err.value)
    big = app.job_from_ui(**_ui(upload=str(photo_file), model_upload=str(tiny_release), size=0))
    with pytest.raises(io.InputError, match="photo.png is 64x48; the app makes images up to 60 px"):
        app.run_job(big, decoder, tmp_path, app.Limits(max_side=60))


def test_wrong_model_files(photo_file, tmp_path):
    from safetensors.torch import save_file

    cache = app.DecoderCache(device="cpu", precision="fp32")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(io.InputError, match="not a safetensors generator"):
        cache.get(photo_file)
    with pytest.raises(io.InputError, match="not an mgan generator"):
        cache.get(foreign)
    with pytest.raises(io.InputError, match="generator not found"):
        cache.get(tmp_path / "missing.safetensors")
    assert cache.loads == 0


# ----------------------------------------------------------------------------- cache and files


def test_decoder_is_loaded_once_per_model(tiny_release, tmp_path):
    made = []

    def factory(path, **kw):
        made.append(path)
        return object()

    cache = app.DecoderCache(capacity=2, factory=factory)
    copy = shutil.copy(tiny_release, tmp_path / "same-bytes.safetensors")  # a re-upload of the same file
    other = save_release(Generator(GeneratorConfig(channels=(16, 8, 8))), tmp_path / "other.safetensors")
    third = save_release(Generator(GeneratorConfig(channels=(8, 8, 8))), tmp_path / "third.safetensors")
    d = cache.get(tiny_release)
    assert cache.get(tiny_release) is d and cache.get(Path(copy)) is d and cache.loads == 1
    threads = [threading.Thread(target=cache.get, args=(other,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.loads == 2  # concurrent requests for a new model wait for one load
    cache.get(third)  # capacity 2: the least recently used (tiny_release) goes
    cache.get(tiny_release)
    assert cache.loads == 4 and made[-1] == tiny_release


def test_files_stay_in_the_apps_folder_per_session(tmp_path):
    files = app.AppFiles(tmp_path)
    assert files.root.parent == tmp_path and files.uploads.is_dir()
    a1 = files.new_run("sessionA")
    (a1 / "out.png").write_bytes(b"x")
    b1 = files.new_run("sessionB")
    a2 = files.new_run("sessionA")
    assert not a1.exists() and a2.is_dir() and b1.is_dir()  # a session keeps its newest run only
    assert a2.parent != b1.parent and files.sessions in a2.parents
    assert files.sessions in files.new_run("../../etc").parents  # a session name cannot escape
    files.end_session("sessionB")
    assert not b1.exists() and a2.exists()
    files.cleanup()
    assert not files.root.exists()


def test_cli_rejects_bad_options(capsys):
    assert app.main(["--port", "0"]) == 2
    assert "error: --port must be in 1..65535" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the page in Chromium

# Runs the app with every connection outside the loopback refused and reported, so the
# test also shows that the app calls nothing outside the machine.
_BOOT = """
import socket, sys
_connect = socket.socket.connect
def _loopback_only(self, address):
    if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
        print(f"OUTSIDE CALL {address}", file=sys.stderr, flush=True)
        raise OSError("outside call refused by the test")
    return _connect(self, address)
socket.socket.connect = _loopback_only
from mgan.app import main
raise SystemExit(main(sys.argv[1:]))
"""


def _chromium() -> str | None:
    for name in (os.environ.get("MGAN_CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_photo(path: Path) -> Path:
    """A 128x96 photo: a real one from ../shared/data when present, else a generated pattern."""
    real = SHARED / "photo" / "tubingen.jpg"
    if real.is_file():
        with Image.open(real) as im:
            im.convert("RGB").resize((128, 96), Image.LANCZOS).save(path)
        return path
    return io.save_image(smooth_image(5, 96, 128), path)


def test_page_in_chromium(tmp_path):
    if importlib.util.find_spec("gradio") is None:
        pytest.skip('Gradio is not installed (pip install -e ".[app]")')
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("Playwright is not installed (pip install playwright)")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no Chromium binary (apt-get install chromium, or set MGAN_CHROMIUM)")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    photo = _test_photo(tmp_path / "photo.png")
    (tmp_path / "notes.png").write_text("not an image")
    port = _free_port()
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "stderr.txt"  # a file, not a pipe: a full pipe would stall the app
    with open(log, "w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-c", _BOOT, "--port", str(port), "--temp-dir", str(temp), "--device", "cpu"],
            cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(server.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("serving on" in line for line in out):
            assert server.poll() is None, f"the app exited: {log.read_text()}"
            assert time.monotonic() < deadline, "the app did not start within 60 s"
            time.sleep(0.2)
        hosts = set()
        with sync_playwright() as pw:
            try:
                browser = pw.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
            except PlaywrightError as exc:
                pytest.skip(f"Chromium at {browser_path} does not start: {str(exc).splitlines()[0]}")
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: hosts.add(r.url.split("/")[2]) if "://" in r.url else None)
            page.set_default_timeout(30_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#run")
            # A bad upload gets one sentence in the page, and the app goes on serving.
            page.set_input_files("#upload input[type=file]", tmp_path / "notes.png")
            page.get_by_text("notes.png: not an image file").wait_for()
            page.click("#upload button[aria-label=Clear]")
            page.set_input_files("#upload input[type=file]", photo)
            page.wait_for_selector("#preview img")
            page.fill("#size input", "128")
            page.click("#run")
            page.wait_for_selector("#result img", timeout=60_000)
            status = page.inner_text("#status")
            src = page.get_attribute("#result img", "src")
            result = Image.open(_io.BytesIO(page.request.get(src).body())).convert("RGB")
            for close in page.locator("button[aria-label='Close']").all():  # dismiss the earlier error
                close.click()
            page.wait_for_timeout(300)
            page.screenshot(path=os.environ.get("MGAN_APP_SCREENSHOT", str(tmp_path / "app_screenshot.png")),
                            full_page=True)
            browser.close()
        assert status.startswith("Done in ") and "128x96 PNG" in status
        assert result.size == (128, 96)
        before = io.to_uint8(io.load_image(photo)).astype(np.float32)
        assert np.abs(np.asarray(result, dtype=np.float32) - before).mean() > 10  # stylised, not the photo
        assert hosts == {f"127.0.0.1:{port}"}  # the page loads nothing from outside
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        reader.join(5)
        server.stdout.close()
    err = log.read_text()
    assert "OUTSIDE CALL" not in err and "Traceback" not in err, err
    assert server.returncode == 130 and list(temp.iterdir()) == []  # the temporary folder is removed
