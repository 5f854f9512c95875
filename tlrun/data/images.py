"""Image-folder datasets (Office-31, Office-Home): ``Domain.X`` is a tuple of image file paths.

A :class:`ImageFolderDataset` knows where each domain's class folders lie (:meth:`~ImageFolderDataset.domain_dir`),
its class names, and where its official archive can be downloaded. Images are decoded later, by the backbone's
input pipeline, through :func:`open_image`.

Checksums: hashing thousands of images on every run would be slow, so ``Domain.checksums`` holds a
*fingerprint* of each domain folder instead: the sha256 of the sorted lines ``<relative path>\\t<size in
bytes>`` of the images listed. It changes when an image is added, removed, renamed or replaced by one of another
size; it does not depend on modification times, so copies of the same data on two machines match.

Imports numpy only at module level (PIL when an image is opened); no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np

from tlrun.data.base import DataError, Domain, TransferDataset, caught, check_domains, sha256_file
from tlrun.progress import progress_bar

#: File extensions read as images (lower case); other files in class folders are ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_HASHES = ("md5", "sha1", "sha256")
#: Bump when the layout of the verified-images cache files changes.
VERIFIED_VERSION = 1


def open_image(path: str | Path):
    """Open an image file as an RGB ``PIL.Image``, decoded now; :class:`DataError` naming a corrupt file.

    Decoding catches truncated files, which ``PIL.Image.verify`` lets through for JPEG.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image {path} not found: the dataset folder changed since it was listed") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(
            f"cannot read image {path}: corrupt or not an image ({error}); replace it from the original archive "
            "or delete it"
        ) from None


def _read_verified(file: Path) -> dict[str, list]:
    """The entries of a verified-images file (empty when it is missing or unreadable: it is only a cache)."""
    try:
        content = json.loads(file.read_text())
        return content["files"] if content.get("version") == VERIFIED_VERSION else {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _write_verified(file: Path, entries: dict[str, list]) -> None:
    """Replace ``file`` with ``entries`` atomically; a cache that cannot be written is skipped."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=file.parent, prefix=f".{file.name}.", delete=False) as handle:
            json.dump({"version": VERIFIED_VERSION, "files": entries}, handle)
        os.replace(handle.name, file)
    except OSError:
        pass


def _verify_file(path: str, size: int, mtime_ns: int, good: set[str]) -> list:
    """``[size, mtime_ns, sha256]`` of an image that decodes (not decoded again when its hash is in ``good``);
    :class:`DataError` when it does not."""
    try:
        digest = sha256_file(path)
    except OSError as error:
        raise DataError(f"cannot read image {path}: {error}") from None
    if digest not in good:
        open_image(path)
    return [size, mtime_ns, digest]


def verify_images(domain: Domain, cache_dir: Path) -> None:
    """Decode every image file of ``domain`` once, so that a corrupt one stops a run before it starts.

    Images that decode are remembered under ``cache_dir/verified_images/`` (one file per image folder) by the
    sha256 of their bytes, with their size and modification time: a file whose size and time are unchanged is
    not read again, and one with a known hash (touched, or copied back) is hashed but not decoded again. So the
    check reads every image once, and later runs only ``stat`` them. Raises :class:`DataError` naming every
    file that cannot be decoded (those are not remembered). A domain of arrays has nothing to check.
    """
    if not domain.is_images or not domain.X:
        return
    folder = os.path.commonpath([os.path.dirname(path) for path in domain.X])
    cache_file = Path(cache_dir) / "verified_images" / f"{hashlib.sha256(folder.encode()).hexdigest()[:32]}.json"
    known = _read_verified(cache_file)
    good = {entry[2] for entry in known.values()}
    verified: dict[str, list] = {}
    pending: list[tuple[str, int, int]] = []
    errors: list[str] = []
    for path in domain.X:
        try:
            stat = os.stat(path)
        except OSError as error:
            errors.append(f"cannot read image {path}: {error.strerror}")
            continue
        entry = known.get(path)
        if entry is not None and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
            verified[path] = entry
        else:
            pending.append((path, stat.st_size, stat.st_mtime_ns))
    if len(pending) >= 1000:
        print(f"tlrun: decoding the {len(pending)} new images of domain {domain.name} once, to check them "
              f"(remembered in {cache_file.parent})", file=sys.stderr, flush=True)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        futures = {path: pool.submit(_verify_file, path, size, mtime, good) for path, size, mtime in pending}
        for path, future in futures.items():
            try:
                verified[path] = future.result()
            except DataError as error:
                errors.append(str(error))
    if verified != known:
        _write_verified(cache_file, verified)
    if len(errors) == 1:
        raise DataError(errors[0])
    if errors:
        raise DataError(
            f"{len(errors)} images of domain {domain.describe()} cannot be read; replace them from the original "
            f"archive or delete them: {'; '.join(errors[:5])}{'; ...' if len(errors) > 5 else ''}"
        )


# --------------------------------------------------------------------------------------------------- download


def parse_checksum(checksum: str) -> tuple[str, str]:
    """``"md5:<hex>"``, ``"sha1:<hex>"`` or ``"sha256:<hex>"`` (a bare hex digest: algorithm from its length)."""
    text = str(checksum).strip().lower()
    algorithm, _, digest = text.rpartition(":")
    if not algorithm:
        algorithm = {32: "md5", 40: "sha1", 64: "sha256"}.get(len(digest), "")
    if algorithm not in _HASHES or not digest or any(c not in "0123456789abcdef" for c in digest):
        raise DataError(
            f"dataset.checksum {checksum!r} is not understood; write it as md5:<hex>, sha1:<hex> or sha256:<hex>"
        )
    return algorithm, digest


def _refuse_web_page(path: str, url: str, destination: Path) -> None:
    """:class:`DataError` when the file at ``path`` is an HTML page (a download confirmation or login page)."""
    with open(path, "rb") as handle:
        start = handle.read(256).lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        raise DataError(
            f"{url} answered with a web page instead of the archive (a download confirmation or login page?); "
            f"download it in a browser and put it at {destination}"
        )


def download_file(url: str, destination: Path, checksum: str | None, label: str = "download") -> Path:
    """Download ``url`` to ``destination`` with pooch, the bytes counted on a progress bar, and verify ``checksum``.

    pooch writes to a temporary file beside ``destination`` and renames it only when complete and, if ``checksum``
    is set, matching it: a failed or interrupted download leaves nothing behind (and cannot resume: the next call
    starts over), a mismatch deletes the file. ``file:`` URLs are copied. Every failure is a :class:`DataError`
    that says what to do.
    """
    import pooch
    import requests

    expected = parse_checksum(checksum) if checksum else None
    pooch.get_logger().setLevel("WARNING")  # its notes speak of pooch's own arguments
    with progress_bar(label, unit="bytes") as bar:

        def fetch(address: str, output_file: str, _: Any) -> None:
            if address.startswith("file:"):
                shutil.copyfile(url2pathname(urlparse(address).path), output_file)
            else:
                http = pooch.HTTPDownloader(progressbar=bar, chunk_size=1 << 20, timeout=60,
                                            headers={"User-Agent": "tlrun"})
                http(address, output_file, None)
            size = os.path.getsize(output_file)
            bar.total = size  # the server may not have said
            bar.reset()
            bar.update(size)
            _refuse_web_page(output_file, url, destination)

        try:
            pooch.retrieve(url, expected and ":".join(expected), fname=destination.name, path=destination.parent,
                           downloader=fetch)
        except requests.HTTPError as error:
            raise DataError(
                f"downloading {url} failed (HTTP {error.response.status_code} {error.response.reason}); download it "
                f"yourself and put it at {destination}"
            ) from None
        except (requests.RequestException, OSError) as error:
            raise DataError(
                f"downloading {url} failed ({error}); run again, or download it yourself and put it at {destination}"
            ) from None
        except ValueError as error:  # pooch's hash check (it deleted the file), or an address that is no URL
            if expected is None:
                raise DataError(f"cannot download {url!r}: {error}") from None
            algorithm, digest = expected
            raise DataError(
                f"the file downloaded from {url} does not match dataset.checksum (expected {algorithm} {digest}): it "
                "was deleted. The download was corrupted or the server sent another file; retry, or download it "
                f"yourself and put it at {destination} (set dataset.checksum=null to skip the check)"
            ) from None
    return destination


def _safe_members(names: list[str], archive: Path) -> None:
    for name in names:
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts:
            raise DataError(f"{archive} holds an unsafe path {name!r}; refusing to extract it")


def extract_archive(archive: Path, destination: Path) -> None:
    """Extract a ``.tar(.gz|.bz2|.xz)`` or ``.zip`` archive into ``destination`` (no absolute or ``..`` paths)."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                _safe_members(handle.namelist(), archive)
                handle.extractall(destination)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as handle:
                members = handle.getmembers()
                _safe_members([m.name for m in members], archive)
                files = [m for m in members if m.isdir() or m.isfile()]  # no links, devices
                if hasattr(tarfile, "data_filter"):
                    handle.extractall(destination, members=files, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    handle.extractall(destination, members=files)
        else:
            raise DataError(f"{archive} is neither a tar nor a zip archive; download it again")
    except DataError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"cannot extract {archive}: {error}; delete it and download it again") from None


# --------------------------------------------------------------------------------------------------- datasets


class ImageFolderDataset(TransferDataset):
    """Domains of images sorted into one folder per class: ``domain_dir(domain)/<class>/<image>``.

    Subclasses set :attr:`domains`, :attr:`default_source`/:attr:`default_target`, :attr:`class_names` (``None``:
    the sorted class folders found in all domains), :attr:`folder_aliases`, :meth:`domain_dir` (the layout), and
    the official archive (:attr:`archive_url`, :attr:`archive_name`, :attr:`homepage`). Hidden files and files
    that are not images are ignored; an empty class folder is a class without samples in that domain; a domain
    with no image at all is an error.

    Args:
        source, target: domain names (``None``: :attr:`default_source`, :attr:`default_target`).
        download: when the data are missing, download the archive into ``root``, verify it against
            ``checksum`` (when set) and extract it into the expected layout.
        url: the archive's address (default: the official one).
        checksum: ``md5:<hex>``, ``sha1:<hex>`` or ``sha256:<hex>`` of the archive; ``None`` skips the check.
        augment: training-time augmentation policy (see :data:`~tlrun.data.base.AUGMENTATIONS`).
    """

    holds_images = True
    default_source: str = ""
    default_target: str = ""
    class_names: tuple[str, ...] | None = None
    #: Other names a domain's folder may have on disk (in some releases), by domain.
    folder_aliases: dict[str, tuple[str, ...]] = {}
    archive_url: str = ""
    archive_name: str = ""
    archive_checksum: str | None = None
    homepage: str = ""

    def __init__(
        self,
        root: str | None = None,
        source: str | None = None,
        target: str | None = None,
        preprocess: str = "none",
        source_val_fraction: float = 0.0,
        download: bool = False,
        url: str | None = None,
        checksum: str | None = "default",
        augment: str = "none",
    ) -> None:
        super().__init__(
            root, source or self.default_source, target or self.default_target, preprocess, source_val_fraction,
            augment,
        )
        self.download = bool(download)
        self.url = url or self.archive_url
        self.checksum = self.archive_checksum if checksum == "default" else checksum

    # -- layout

    def _root(self) -> Path:
        if self.root is None:
            raise DataError(
                f"dataset.root is not set: give the folder that holds (or will hold) the {self.name} images in "
                f"the layout {self._layout()}, e.g. dataset.root=/data/{self.name}; {self._how_to_get()}"
            )
        return self.root

    def _domain_folder(self, base: Path, domain: str) -> Path:
        """``base/<domain>``, or ``base/<alias>`` when only a folder with one of the domain's aliases is there."""
        if not (base / domain).is_dir():
            for name in self.folder_aliases.get(domain, ()):
                if (base / name).is_dir():
                    return base / name
        return base / domain

    def domain_dir(self, domain: str) -> Path:
        """The folder holding ``domain``'s class folders."""
        return self._domain_folder(self._root(), domain)

    def _layout(self) -> str:
        return "<root>/<domain>/<class>/<image>"

    def _how_to_get(self) -> str:
        text = f"get the archive {self.url or self.homepage}"
        if self.homepage and self.url != self.homepage:
            text += f" (see {self.homepage})"
        text += " and extract it into dataset.root, or set dataset.download=true to download it"
        return text

    def _missing(self) -> list[str]:
        """The wanted domains, among those of the dataset, whose folder is not there."""
        return [d for d in self.wanted_domains() if d in self.domains and not self.domain_dir(d).is_dir()]

    def _missing_error(self, missing: list[str]) -> DataError:
        folders = ", ".join(str(self.domain_dir(d)) for d in missing)
        return DataError(
            f"{self.name} images not found: expected the folder(s) {folders} (layout {self._layout()}). "
            f"To fix: {self._how_to_get()}."
        )

    def problems(self) -> list[str]:
        found = super().problems()
        if self.checksum:
            found += caught(lambda: parse_checksum(self.checksum))
        if self.root is None:
            return found + caught(self._root)
        missing = self._missing()
        if missing and self.download and not found:
            found += caught(self.fetch)
            missing = self._missing()
        if missing:
            found.append(str(self._missing_error(missing)))
        return found

    # -- download

    def fetch(self) -> None:
        """Download the archive into ``root`` (unless it is there already), verify it, and extract the missing
        domains into place."""
        root = self._root()
        name = self.archive_name or Path(self.url.split("?")[0]).name or f"{self.name}-archive"
        archive = root / name
        downloaded = not archive.exists()  # an archive the user put there is verified and kept
        if downloaded and not self.url:
            raise DataError(f"no download address for {self.name} and no archive {archive}: {self._how_to_get()}")
        root.mkdir(parents=True, exist_ok=True)
        if downloaded:
            download_file(self.url, archive, self.checksum, label=f"{self.name}: {name}")
        elif self.checksum:
            import pooch

            algorithm, digest = parse_checksum(self.checksum)
            if pooch.file_hash(str(archive), alg=algorithm) != digest:
                raise DataError(
                    f"{archive} does not match dataset.checksum ({self.checksum}); delete it and download again"
                )
        scratch = Path(tempfile.mkdtemp(prefix=f".{self.name}-extract-", dir=root))
        try:
            extract_archive(archive, scratch)
            base = self._find_extracted(scratch)
            for domain in self.domains:
                extracted = self._domain_folder(base, domain)
                if extracted.is_dir() and not self._domain_folder(root, domain).exists():
                    shutil.move(str(extracted), str(root / extracted.name))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if downloaded:
            archive.unlink(missing_ok=True)

    def _find_extracted(self, scratch: Path) -> Path:
        """The folder of the extracted tree that holds the domain folders (the top, or one level down)."""
        for base in [scratch, *sorted(p for p in scratch.iterdir() if p.is_dir())]:
            if any(self._domain_folder(base, domain).is_dir() for domain in self.domains):
                return base
        raise DataError(
            f"the {self.name} archive does not contain the expected domain folders ({', '.join(self.domains)}); "
            f"extract it yourself into {self._root()} so that the layout is {self._layout()}"
        )

    # -- loading

    def _class_folders(self, domain: str) -> list[str]:
        folder = self.domain_dir(domain)
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def label_space(self) -> tuple[str, ...]:
        """Class names, index = label: :attr:`class_names`, or the class folders found in any present domain."""
        if self.class_names is not None:
            return self.class_names
        found: set[str] = set()
        for domain in self.domains:
            if self.domain_dir(domain).is_dir():
                found.update(self._class_folders(domain))
        return tuple(sorted(found))

    def load(self, domain: str) -> Domain:
        check_domains(self.name, self.domains, domain)
        folder = self.domain_dir(domain)
        if not folder.is_dir():
            if self.download:
                self.fetch()
            if not folder.is_dir():
                raise self._missing_error([domain])
        classes = self.label_space()
        index = {name: k for k, name in enumerate(classes)}
        unknown = [name for name in self._class_folders(domain) if name not in index]
        if unknown:
            raise DataError(
                f"{folder} has folders that are not {self.name} classes: {', '.join(unknown)}; move them out "
                f"(the layout is {self._layout()})"
            )
        paths: list[str] = []
        labels: list[int] = []
        lines: list[str] = []
        for name in classes:
            class_dir = folder / name
            if not class_dir.is_dir():
                continue
            for path in sorted(class_dir.iterdir()):
                if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
                    continue
                paths.append(str(path.resolve()))
                labels.append(index[name])
                lines.append(f"{path.relative_to(folder).as_posix()}\t{path.stat().st_size}")
        if not paths:
            raise DataError(
                f"no images in {folder}: expected class folders holding image files ({', '.join(IMAGE_EXTENSIONS)}) "
                f"in the layout {self._layout()}"
            )
        fingerprint = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        return Domain(
            name=domain,
            X=tuple(paths),
            y=np.asarray(labels, dtype=np.int64),
            classes=classes,
            checksums={f"{domain} (fingerprint of {len(paths)} images)": fingerprint},
            files=(str(folder),),
        )


OFFICE31_CLASSES = (
    "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair", "desk_lamp",
    "desktop_computer", "file_cabinet", "headphones", "keyboard", "laptop_computer", "letter_tray", "mobile_phone",
    "monitor", "mouse", "mug", "paper_notebook", "pen", "phone", "printer", "projector", "punchers", "ring_binder",
    "ruler", "scissors", "speaker", "stapler", "tape_dispenser", "trash_can",
)  # fmt: skip


class Office31(ImageFolderDataset):
    """Office-31 (Saenko et al., ECCV 2010): 31 office object classes in 3 domains, 4,110 images.

    Official layout, as the archive ``domain_adaptation_images.tar.gz`` extracts:
    ``<root>/{amazon,dslr,webcam}/images/<class>/*.jpg``. Class names are sorted (label 0 = ``back_pack``).

    The archive is hosted on Google Drive, which may answer a script with a confirmation page instead of the
    file; then download it in a browser and put it in ``root`` (``download=true`` extracts an archive already
    there). The default checksum is the md5 published in DeepMind's ``dm_nevis`` dataset registry for this
    archive; set ``checksum`` to another digest, or to ``null`` to skip verification.
    """

    name = "office31"
    domains = ("amazon", "dslr", "webcam")
    default_source, default_target = "amazon", "webcam"
    class_names = OFFICE31_CLASSES
    archive_url = "https://drive.google.com/uc?export=download&id=0B4IapRTv9pJ1WGZVd1VDMmhwdlE&confirm=t"
    archive_name = "domain_adaptation_images.tar.gz"
    archive_checksum = "md5:1b536d114869a5a8aa4580b89e9758fb"
    homepage = "https://faculty.cc.gatech.edu/~judy/domainadapt/"

    def domain_dir(self, domain: str) -> Path:
        return self._root() / domain / "images"

    def _layout(self) -> str:
        return "<root>/{amazon,dslr,webcam}/images/<class>/*.jpg"

    def _missing_error(self, missing: list[str]) -> DataError:
        error = super()._missing_error(missing)
        flat = [d for d in missing if (self._root() / d / self.class_names[0]).is_dir()]
        if flat:
            return DataError(
                f"{error} Found class folders directly under {', '.join(str(self._root() / d) for d in flat)}: "
                "move them into an images/ subfolder"
            )
        return error


OFFICE_HOME_CLASSES = (
    "Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike", "Bottle", "Bucket", "Calculator", "Calendar", "Candles",
    "Chair", "Clipboards", "Computer", "Couch", "Curtains", "Desk_Lamp", "Drill", "Eraser", "Exit_Sign", "Fan",
    "File_Cabinet", "Flipflops", "Flowers", "Folder", "Fork", "Glasses", "Hammer", "Helmet", "Kettle", "Keyboard",
    "Knives", "Lamp_Shade", "Laptop", "Marker", "Monitor", "Mop", "Mouse", "Mug", "Notebook", "Oven", "Pan",
    "Paper_Clip", "Pen", "Pencil", "Postit_Notes", "Printer", "Push_Pin", "Radio", "Refrigerator", "Ruler",
    "Scissors", "Screwdriver", "Shelf", "Sink", "Sneakers", "Soda", "Speaker", "Spoon", "TV", "Table", "Telephone",
    "ToothBrush", "Toys", "Trash_Can", "Webcam",
)  # fmt: skip


class OfficeHome(ImageFolderDataset):
    """Office-Home (Venkateswara et al., CVPR 2017): 65 object classes in 4 domains, 15,588 images.

    Layout, as the release ``OfficeHomeDataset_10072016.zip`` extracts: ``<root>/{Art,Clipart,Product,Real_World}
    /<class>/*.jpg``. Some releases name the last folder ``Real World`` (with a space); both names are read, and
    the domain is called ``Real_World`` either way. Class names are the folder names, sorted by code point as
    ``sorted()`` and torchvision's ``ImageFolder`` sort them (label 0 = ``Alarm_Clock``; ``TV`` before ``Table``).

    The archive is behind a form on the official page, so there is no default download address: download it
    there and extract it into ``root``, or put the archive in ``root`` and set ``download=true`` to extract it; with
    ``url`` set, ``download=true`` downloads it from there. ``checksum`` is optional (the authors publish none).
    """

    name = "office_home"
    domains = ("Art", "Clipart", "Product", "Real_World")
    default_source, default_target = "Art", "Clipart"
    class_names = OFFICE_HOME_CLASSES
    folder_aliases = {"Real_World": ("Real World",)}
    archive_name = "OfficeHomeDataset_10072016.zip"
    homepage = "https://www.hemanthdv.org/officeHomeDataset.html"

    def _layout(self) -> str:
        return "<root>/{Art,Clipart,Product,Real_World}/<class>/*.jpg, where Real_World may be named 'Real World'"

    def _how_to_get(self) -> str:
        if self.url:
            return super()._how_to_get()
        return (
            f"download {self.archive_name} from {self.homepage} (behind a form) and extract it into dataset.root, "
            "or put the archive in dataset.root and set dataset.download=true (dataset.url=<address> downloads it "
            "from there)"
        )


class ImageFolder(ImageFolderDataset):
    """Any images in the ImageFolder layout, one folder per domain: ``<root>/<domain>/<class>/<image>``.

    The domains are the sub-folders of ``root`` (for example ``train`` and ``test`` of a fine-grained data set,
    or one folder per domain); the classes are the class folders found in any of them, sorted. ``target_test``
    names a domain whose images are the ``finetune`` test set (a data set's official test split): the labeled
    pool is then drawn from the whole ``target`` domain, up to ``scenario.target_label_fraction=1``.
    Nothing is downloaded: arrange the images yourself.
    """

    name = "image_folder"

    def __init__(
        self,
        root: str | None = None,
        source: str | None = None,
        target: str | None = None,
        target_test: str | None = None,
        preprocess: str = "none",
        source_val_fraction: float = 0.0,
        augment: str = "none",
    ) -> None:
        super().__init__(root, source, target, preprocess, source_val_fraction, download=False, checksum=None,
                         augment=augment)
        self.target_test = target_test or None

    @property
    def domains(self) -> tuple[str, ...]:  # type: ignore[override]
        """The sub-folders of ``root`` (none when it does not exist)."""
        root = self.root
        if root is None or not root.is_dir():
            return ()
        return tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))

    def _how_to_get(self) -> str:
        return (
            "arrange the images as <root>/<domain>/<class>/<image> (one folder per domain, e.g. train/ and test/, "
            "each holding one folder per class)"
        )

    def _missing(self) -> list[str]:
        return [d for d in self.wanted_domains() if not self.domain_dir(d).is_dir()]

    def problems(self) -> list[str]:
        if self.root is None or not self.root.is_dir():
            where = caught(self._root) or [f"dataset.root={self.root} does not exist; {self._how_to_get()}"]
            return where + self.option_problems()
        found = [] if self.source and self.target else [
            f"set dataset.source and dataset.target to folders of {self.root}: {', '.join(self.domains)}"
        ]
        missing = self._missing()
        if missing:
            folders = ", ".join(self.domains) or "none"
            found.append(f"{self._missing_error(missing)} Folders found in {self.root}: {folders}")
        return found + self.option_problems()
