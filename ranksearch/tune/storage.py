"""Where a search keeps its experiment directory: a local folder or an S3 (-compatible) prefix.

One `Storage` names the root that holds every search (`<root>/<search name>/`); Ray Tune writes
its trial folders and checkpoints there, and the driver keeps `search.json` (what `resume`
needs) next to them. Both go through one pyarrow filesystem, so a local path and
`s3://bucket/prefix` behave the same, and the object pickles to Ray workers.

S3-compatible servers (moto, MinIO, Ceph) need an endpoint: give it in the URI
(`s3://bucket/prefix?endpoint=http://127.0.0.1:9000`) or through $AWS_ENDPOINT_URL_S3,
$AWS_ENDPOINT_URL or $MLFLOW_S3_ENDPOINT_URL. Credentials come from the usual AWS variables.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ranksearch.errors import RanksearchError

DEFAULT_STORAGE = "runs/ray"
ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")


class StorageError(RanksearchError):
    """A storage location that cannot be used (bad URI, missing bucket, unreadable state)."""


@dataclass(frozen=True)
class Storage:
    """A root folder for searches on a local disk or in S3.

    `root` is the filesystem path (an absolute local path, or `bucket/prefix` for S3);
    `uri` is what users see and what is stored in the search state.
    """

    uri: str
    root: str
    scheme: str = "file"  # "file" or "s3"
    endpoint: str | None = None
    region: str | None = None
    _fs: Any = field(default=None, compare=False, repr=False)

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def parse(cls, spec: str | os.PathLike[str] | None = None, *, endpoint: str | None = None) -> Storage:
        """Validate a storage path or `s3://` URI without touching it (no I/O)."""
        text = str(spec) if spec is not None else DEFAULT_STORAGE
        if not text.strip():
            raise StorageError("storage is empty; give a folder or an s3://bucket/prefix URI")
        if "://" not in text:
            if text.startswith("file:"):
                text = text.removeprefix("file:")
            path = Path(text).expanduser().resolve()
            return cls(uri=str(path), root=path.as_posix())
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme == "file":
            path = Path(parts.path).expanduser().resolve()
            return cls(uri=str(path), root=path.as_posix())
        if scheme not in ("s3", "s3a"):
            raise StorageError(f"storage {text!r}: unsupported scheme '{scheme}://'; give a local "
                               "folder or s3://bucket/prefix")
        bucket = parts.netloc
        if not bucket:
            raise StorageError(f"storage {text!r} names no bucket; write s3://BUCKET/prefix")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = sorted(set(query) - {"endpoint", "endpoint_override", "region"})
        if unknown:
            raise StorageError(f"storage {text!r}: unknown option(s) {', '.join(unknown)}; "
                               "valid ones are endpoint and region")
        endpoint = (endpoint or query.get("endpoint") or query.get("endpoint_override")
                    or next((os.environ[k] for k in ENDPOINT_ENV if os.environ.get(k)), None))
        if endpoint and "://" not in endpoint:
            raise StorageError(f"S3 endpoint {endpoint!r} must be a URL such as http://127.0.0.1:9000")
        prefix = parts.path.strip("/")
        root = f"{bucket}/{prefix}" if prefix else bucket
        uri = f"s3://{root}"
        region = query.get("region") or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        return cls(uri=uri, root=root, scheme="s3", endpoint=endpoint, region=region)

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def fs(self) -> Any:
        """The pyarrow filesystem (made on first use; pyarrow comes with Ray)."""
        if self._fs is None:
            object.__setattr__(self, "_fs", self._make_fs())
        return self._fs

    def _make_fs(self) -> Any:
        import pyarrow.fs as pafs

        if self.is_local:
            return pafs.LocalFileSystem()
        kwargs: dict[str, Any] = {"region": self.region or "us-east-1"}
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            kwargs["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
            kwargs["scheme"] = parts.scheme or "https"
        return pafs.S3FileSystem(**kwargs)

    def __getstate__(self) -> dict[str, Any]:
        # The filesystem is rebuilt where it is unpickled (credentials come from that env).
        return {"uri": self.uri, "root": self.root, "scheme": self.scheme,
                "endpoint": self.endpoint, "region": self.region}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_fs", None)

    # -- paths ------------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """Filesystem path under the root (forward slashes)."""
        return posixpath.join(self.root, *[p.strip("/") for p in parts if p])

    def display(self, *parts: str) -> str:
        """User-facing location of a path under the root (a local path or an s3:// URI)."""
        p = self.path(*parts)
        return p if self.is_local else f"s3://{p}"

    def ray_args(self) -> dict[str, Any]:
        """`storage_path` / `storage_filesystem` for Ray Tune's RunConfig."""
        if self.is_local:
            return {"storage_path": self.root}
        return {"storage_path": self.root, "storage_filesystem": self.fs}

    # -- I/O --------------------------------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        import pyarrow.fs as pafs

        try:
            info = self.fs.get_file_info(self.path(*parts))
        except OSError as exc:
            raise StorageError(f"cannot read {self.display(*parts)}: {exc}") from None
        return info.type != pafs.FileType.NotFound

    def read_text(self, *parts: str) -> str:
        try:
            with self.fs.open_input_stream(self.path(*parts)) as f:
                return f.readall().decode()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "not found" in str(exc).lower() or "no such" in str(exc).lower():
                raise FileNotFoundError(self.display(*parts)) from None
            raise StorageError(f"cannot read {self.display(*parts)}: {exc}") from None

    def write_text(self, text: str, *parts: str) -> None:
        """Write a file atomically (a local temp file renamed over; an S3 PUT is atomic)."""
        target = self.path(*parts)
        data = text.encode()
        if self.is_local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(target).with_name(f".{Path(target).name}.{uuid.uuid4().hex[:8]}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            return
        try:
            with self.fs.open_output_stream(target) as f:
                f.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write {self.display(*parts)}: {exc}") from None

    def list_dir(self, *parts: str) -> list[str]:
        """Names directly under a folder ([] when it does not exist)."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True, recursive=False)
        try:
            return sorted(posixpath.basename(i.path) for i in self.fs.get_file_info(selector))
        except OSError as exc:
            raise StorageError(f"cannot list {self.display(*parts)}: {exc}") from None

    def download(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a folder (a filesystem path under any root) to a local folder."""
        import pyarrow.fs as pafs

        Path(local).mkdir(parents=True, exist_ok=True)
        pafs.copy_files(remote, str(local), source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())

    def check_writable(self) -> None:
        """Fail early (before Ray starts) when the bucket is missing or not writable."""
        if self.is_local:
            try:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create storage folder {self.root}: {exc}") from None
            if not os.access(self.root, os.W_OK):
                raise StorageError(f"storage folder {self.root} is not writable")
            return
        import pyarrow.fs as pafs

        bucket = self.root.split("/", 1)[0]
        try:
            info = self.fs.get_file_info(bucket)
        except OSError as exc:
            where = f" at {self.endpoint}" if self.endpoint else ""
            raise StorageError(f"cannot reach S3{where} for {self.uri}: {exc}. Check the endpoint "
                               "(?endpoint=... or $AWS_ENDPOINT_URL) and the AWS credentials") from None
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"S3 bucket '{bucket}' does not exist (storage {self.uri}); create "
                               "it first")
