"""Image-folder datasets: Office-31 and Office-Home layouts, corrupt files, fingerprints, and the download path
(file:// URLs, and HTTP from a server on the loopback interface)."""

import hashlib
import http.server
import io
import os
import re
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from tlrun.config import instantiate, option_node
from tlrun.data.base import DataError
from tlrun.data.images import (
    OFFICE31_CLASSES, OFFICE_HOME_CLASSES, Office31, OfficeHome, download_file, open_image,
)


def _jpeg(path: Path, colour=(200, 10, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 5), colour).save(path, format="JPEG")


def _office_tree(root: Path, classes=OFFICE31_CLASSES[:3], domains=("amazon", "dslr", "webcam"), images="images"):
    """Two tiny JPEGs per class and domain, in ``root/<domain>/<images>/<class>/`` (``images=""``: no subfolder)."""
    for domain in domains:
        for k, name in enumerate(classes):
            for i in range(2):
                _jpeg(root / domain / images / name / f"frame_{i:04d}.jpg", (k * 40, i * 100, 50))


def test_office31_tree(tmp_path):
    _office_tree(tmp_path)
    (tmp_path / "amazon" / "images" / "bike" / "notes.txt").write_text("not an image")
    (tmp_path / "amazon" / "images" / "bike" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "amazon" / "images" / "bookcase").mkdir()  # empty class folder
    ds = Office31(root=str(tmp_path), source="amazon", target="webcam")
    ds.check()
    s, t = ds.load_pair()
    assert s.classes == OFFICE31_CLASSES and len(OFFICE31_CLASSES) == 31
    assert list(OFFICE31_CLASSES) == sorted(OFFICE31_CLASSES)
    assert len(s) == 6 and all(p.endswith(".jpg") for p in s.X)
    np.testing.assert_array_equal(s.y, [0, 0, 1, 1, 2, 2])  # back_pack, bike, bike_helmet
    assert s.is_images and s.image_shape is None
    image = open_image(s.X[0])
    assert image.mode == "RGB" and image.size == (6, 5)
    (fingerprint,) = s.checksums.values()
    assert len(fingerprint) == 64


def test_fingerprint_tracks_file_list(tmp_path):
    _office_tree(tmp_path)
    ds = Office31(root=str(tmp_path), source="amazon", target="webcam")
    before = ds.load("amazon").checksums
    assert ds.load("amazon").checksums == before
    _jpeg(tmp_path / "amazon" / "images" / "bike" / "frame_0009.jpg")
    assert ds.load("amazon").checksums != before


def test_missing_office31_message(tmp_path):
    ds = Office31(root=str(tmp_path / "office31"), source="amazon", target="dslr")
    with pytest.raises(DataError) as info:
        ds.check()
    message = str(info.value)
    assert str(tmp_path / "office31" / "amazon" / "images") in message
    assert "domain_adaptation_images" in message or "drive.google.com" in message
    assert "dataset.download=true" in message


def test_flat_layout_hint(tmp_path):
    _jpeg(tmp_path / "amazon" / "back_pack" / "a.jpg")
    with pytest.raises(DataError, match="images/ subfolder"):
        Office31(root=str(tmp_path), source="amazon", target="webcam").check()


def test_unknown_class_folder_and_empty_domain(tmp_path):
    _office_tree(tmp_path)
    _jpeg(tmp_path / "dslr" / "images" / "giraffe" / "a.jpg")
    with pytest.raises(DataError, match="giraffe"):
        Office31(root=str(tmp_path)).load("dslr")
    (tmp_path / "empty" / "webcam" / "images" / "bike").mkdir(parents=True)
    with pytest.raises(DataError) as info:
        Office31(root=str(tmp_path / "empty")).load("webcam")
    assert "no images in" in str(info.value) and str(tmp_path / "empty" / "webcam" / "images") in str(info.value)


def test_class_difference_between_domains(tmp_path):
    _office_tree(tmp_path, classes=OFFICE31_CLASSES[:3], domains=("amazon",))
    _office_tree(tmp_path, classes=OFFICE31_CLASSES[1:4], domains=("webcam",))
    with pytest.raises(DataError) as info:
        Office31(root=str(tmp_path), source="amazon", target="webcam").load_pair()
    assert "only in source: back_pack" in str(info.value) and "only in target: bookcase" in str(info.value)


def test_corrupt_image(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 this is not really a jpeg")
    with pytest.raises(DataError) as info:
        open_image(bad)
    assert str(bad) in str(info.value) and "corrupt" in str(info.value)


# ------------------------------------------------------------------------------------------- download


def _archive(tmp_path: Path, prefix: str = "") -> Path:
    """A tiny tar.gz with the official layout (optionally under a top folder)."""
    archive = tmp_path / "src" / "domain_adaptation_images.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for domain in ("amazon", "dslr", "webcam"):
            for name in OFFICE31_CLASSES[:2]:
                buffer = io.BytesIO()
                Image.new("RGB", (4, 4), (9, 9, 9)).save(buffer, format="JPEG")
                info = tarfile.TarInfo(f"{prefix}{domain}/images/{name}/frame_0001.jpg")
                info.size = len(buffer.getvalue())
                buffer.seek(0)
                tar.addfile(info, buffer)
    return archive


@pytest.mark.parametrize("prefix", ["", "domain_adaptation_images/"])
def test_download_verifies_and_extracts(tmp_path, prefix):
    archive = _archive(tmp_path, prefix)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = tmp_path / "office31"
    ds = Office31(root=str(root), download=True, url=archive.as_uri(), checksum=f"sha256:{digest}")
    ds.check()
    s, t = ds.load_pair()
    assert len(s) == 2 and len(t) == 2
    assert sorted(p.name for p in root.iterdir()) == ["amazon", "dslr", "webcam"]  # archive and scratch removed


def test_download_wrong_checksum_leaves_nothing(tmp_path):
    archive = _archive(tmp_path)
    root = tmp_path / "office31"
    ds = Office31(root=str(root), download=True, url=archive.as_uri(), checksum="md5:" + "0" * 32)
    with pytest.raises(DataError) as info:
        ds.check()
    message = str(info.value)
    assert "expected md5 " + "0" * 32 in message and "deleted" in message
    assert not root.exists() or list(root.iterdir()) == []


class _Server(http.server.BaseHTTPRequestHandler):
    """``/archive``: the bytes of ``ARCHIVE``; ``/chunked``: the same without a length; ``/page``: a web page;
    ``/cut``: half the bytes announced, then the connection closed; anything else: 404."""

    ARCHIVE = bytes(range(256)) * 4096  # 1 MiB

    def do_GET(self):
        body, kind = (b"<!DOCTYPE html><html>Confirm the download</html>", "text/html") if self.path == "/page" else \
            (self.ARCHIVE, "application/gzip")
        if self.path not in ("/archive", "/chunked", "/page", "/cut"):
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        if self.path != "/chunked":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path == "/cut" else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """The base URL of :class:`_Server` on the loopback interface."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("path", ["/archive", "/chunked"])
def test_download_over_http_verifies_and_shows_the_bytes_on_rich(tmp_path, server, path, capsys):
    destination = tmp_path / "out" / "blob.tar.gz"
    sha256 = hashlib.sha256(_Server.ARCHIVE).hexdigest()
    assert download_file(server + path, destination, f"sha256:{sha256}", label="office31: blob") == destination
    assert destination.read_bytes() == _Server.ARCHIVE and os.listdir(destination.parent) == ["blob.tar.gz"]
    shown = capsys.readouterr().err  # where stderr is no terminal, the finished bar once
    assert "office31: blob" in shown and "1.0/1.0 MB" in shown  # also where the server sent no length


@pytest.mark.parametrize(("path", "checksum", "message"), [
    ("/page", None, "answered with a web page instead of the archive"),
    ("/missing", None, "failed (HTTP 404 Not Found); download it yourself and put it at"),
    ("/cut", None, "; run again, or download it yourself"),
    ("/archive", "sha1:" + "0" * 40, "expected sha1 " + "0" * 40 + "): it was deleted"),
])
def test_a_failed_download_says_why_and_leaves_nothing(tmp_path, server, path, checksum, message):
    destination = tmp_path / "out" / "blob.tar.gz"
    destination.parent.mkdir()
    with pytest.raises(DataError, match=re.escape(message)):
        download_file(server + path, destination, checksum)
    assert os.listdir(destination.parent) == []  # no partial file: the next call starts over


def test_download_unreachable_url(tmp_path):
    ds = Office31(root=str(tmp_path / "o"), download=True, url=(tmp_path / "missing.tar.gz").as_uri(), checksum=None)
    with pytest.raises(DataError) as info:
        ds.check()
    assert "missing.tar.gz" in str(info.value) and "download it yourself" in str(info.value)


def test_bad_checksum_syntax(tmp_path):
    with pytest.raises(DataError, match="md5:<hex>"):
        Office31(root=str(tmp_path), checksum="crc:1234").check()


def test_archive_put_in_root_by_hand_is_extracted_and_kept(tmp_path):
    archive = _archive(tmp_path)
    root = tmp_path / "office31"
    root.mkdir()
    manual = root / "domain_adaptation_images.tar.gz"
    manual.write_bytes(archive.read_bytes())
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    Office31(root=str(root), download=True, url="https://unreachable.invalid/x", checksum=f"md5:{md5}").check()
    assert manual.exists() and (root / "webcam" / "images" / OFFICE31_CLASSES[0]).is_dir()


# ------------------------------------------------------------------------------------------- Office-Home


def test_office_home_classes():
    assert len(OFFICE_HOME_CLASSES) == len(set(OFFICE_HOME_CLASSES)) == 65
    assert list(OFFICE_HOME_CLASSES) == sorted(OFFICE_HOME_CLASSES)  # ImageFolder's order: "TV" before "Table"
    assert OFFICE_HOME_CLASSES.index("TV") < OFFICE_HOME_CLASSES.index("Table")


@pytest.mark.parametrize("real_world", ["Real World", "Real_World"])
def test_office_home_tree_with_either_real_world_name(tmp_path, real_world):
    classes = ("Alarm_Clock", "TV", "Table")
    _office_tree(tmp_path, classes=classes, domains=("Art", "Clipart", real_world), images="")
    ds = OfficeHome(root=str(tmp_path), source="Art", target="Real_World")
    ds.check()
    s, t = ds.load_pair()
    assert s.classes == t.classes == OFFICE_HOME_CLASSES
    np.testing.assert_array_equal(t.y, np.repeat([OFFICE_HOME_CLASSES.index(name) for name in classes], 2))
    assert t.name == "Real_World" and all(f"/{real_world}/" in path for path in t.X)
    assert s.is_images and len(s) == 6


def test_office_home_defaults_and_config(tmp_path):
    ds = OfficeHome(root=str(tmp_path))
    assert (ds.source, ds.target, ds.url, ds.checksum) == ("Art", "Clipart", "", None)
    configured = instantiate(OmegaConf.create(option_node("dataset", "office_home")))
    assert isinstance(configured, OfficeHome) and configured.augment == "crop_flip"
    assert (configured.source, configured.target) == ("Art", "Clipart")


def test_missing_office_home_message(tmp_path):
    with pytest.raises(DataError) as info:
        OfficeHome(root=str(tmp_path / "oh"), source="Product", target="Real_World").check()
    message = str(info.value)
    assert str(tmp_path / "oh" / "Product") in message and str(tmp_path / "oh" / "Real_World") in message
    assert "Real World" in message and "https://www.hemanthdv.org/officeHomeDataset.html" in message
    assert "OfficeHomeDataset_10072016.zip" in message and "dataset.download=true" in message
    with pytest.raises(DataError, match="OfficeHomeDataset_10072016.zip"):  # download without url nor archive
        OfficeHome(root=str(tmp_path / "oh"), download=True).check()


def _office_home_zip(path: Path) -> Path:
    """A tiny zip laid out as the release: ``OfficeHomeDataset_10072016/{Art,...,Real World}/<class>/*.jpg``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for domain in ("Art", "Clipart", "Product", "Real World"):
            for name in OFFICE_HOME_CLASSES[:2]:
                buffer = io.BytesIO()
                Image.new("RGB", (4, 4), (9, 9, 9)).save(buffer, format="JPEG")
                archive.writestr(f"OfficeHomeDataset_10072016/{domain}/{name}/00001.jpg", buffer.getvalue())
        archive.writestr("OfficeHomeDataset_10072016/ImageInfo.csv", "image,artist\n")
    return path


def test_office_home_download_from_url(tmp_path):
    archive = _office_home_zip(tmp_path / "src" / "home.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = tmp_path / "office_home"
    ds = OfficeHome(root=str(root), source="Real_World", target="Art", download=True, url=archive.as_uri(),
                    checksum=f"sha256:{digest}")
    ds.check()
    s, t = ds.load_pair()
    assert len(s) == 2 and len(t) == 2
    assert sorted(p.name for p in root.iterdir()) == ["Art", "Clipart", "Product", "Real World"]


def test_office_home_archive_put_in_root_by_hand(tmp_path):
    root = tmp_path / "office_home"
    manual = _office_home_zip(root / "OfficeHomeDataset_10072016.zip")
    OfficeHome(root=str(root), source="Clipart", target="Real_World", download=True).check()  # no url, no checksum
    assert manual.exists() and (root / "Real World" / OFFICE_HOME_CLASSES[0]).is_dir()
