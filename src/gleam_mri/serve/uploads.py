"""Multipart uploads streamed to disk under a size limit, into files with generated names.

The body is parsed as it arrives (python-multipart's streaming parser): the parts ``file`` and
``header`` go straight to ``input<suffix>`` / ``header.part`` in a fresh folder, other fields
are kept as (short) strings. Only the suffix of the client's file name reaches the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

KNOWN_PARTS = ("file", "header", "model", "formats", "undersample")
MAX_FIELD_BYTES = 64 * 1024
SUFFIX = re.compile(r"^\.[a-z0-9]{1,10}$")


class UploadError(Exception):
    """A rejected upload: HTTP ``status`` and a one-line ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def client_base_name(name: str | None) -> str:
    """The last component of a client's file name (``/`` or ``\\`` separated), at most 255
    characters; ``upload`` when there is none."""
    base = re.split(r"[/\\]", name or "")[-1].strip()
    return base[:255] or "upload"


def safe_suffix(name: str) -> str:
    """The lower-case suffix of ``name`` when it is 1-10 letters or digits, else ``""``."""
    suffix = Path(name).suffix.lower()
    return suffix if SUFFIX.match(suffix) else ""


def safe_stem(name: str) -> str:
    """``name``'s stem with only letters, digits, ``_``, ``.`` and ``-`` (outputs are named
    after it), ``upload`` when nothing is left."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem).lstrip(".-")[:100]
    return stem or "upload"


@dataclass
class Upload:
    """What a multipart body held: files written in ``folder``, text fields, sizes."""

    folder: Path
    file_name: str | None = None  # the client's base name of part ``file``
    input_name: str | None = None  # its stored name in ``folder``
    sizes: dict[str, int] = field(default_factory=dict)  # part name -> bytes (files)
    fields: dict[str, str] = field(default_factory=dict)


class _PartSink:
    """python-multipart callbacks writing file parts to disk and keeping short fields."""

    def __init__(self, boundary: bytes, upload: Upload) -> None:
        self.upload = upload
        self.ended = False
        self._headers: dict[str, str] = {}
        self._field = self._value = b""
        self._name: str | None = None
        self._file: BinaryIO | None = None
        self._buffer: bytearray | None = None
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def _begin(self) -> None:
        self._headers, self._name, self._file, self._buffer = {}, None, None, None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition", ""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name not in KNOWN_PARTS:
            return  # other fields are ignored (their data is dropped)
        if name in self.upload.sizes or name in self.upload.fields:
            raise UploadError(400, f"the field {name!r} is given twice")
        self._name = name
        if name == "file":
            client = params.get(b"filename")
            self.upload.file_name = client_base_name(
                client.decode("utf-8", "replace") if client else None
            )
            self.upload.input_name = f"input{safe_suffix(self.upload.file_name)}"
            self._open(self.upload.input_name)
        elif name == "header":
            self._open("header.part")
        else:
            self._buffer = bytearray()

    def _open(self, name: str) -> None:
        self._file = (self.upload.folder / name).open("xb")
        self.upload.sizes[self._name] = 0

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
            self.upload.sizes[self._name] += end - start
        elif self._buffer is not None:
            self._buffer += data[start:end]
            if len(self._buffer) > MAX_FIELD_BYTES:
                raise UploadError(400, f"the field {self._name!r} is longer than 64 KiB")

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._buffer is not None and self._name:
            try:
                self.upload.fields[self._name] = self._buffer.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(400, f"the field {self._name!r} is not UTF-8 text") from None
            self._buffer = None

    def _end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def receive_upload(request: Request, folder: Path, max_bytes: int) -> Upload:
    """Parse the multipart body of ``request`` into the new folder ``folder``.

    Raises :class:`UploadError`: 413 as soon as the body (by its ``Content-Length`` or as it
    streams) is larger than ``max_bytes``, 400 for a body that is not well-formed multipart.
    The caller removes ``folder`` on error.
    """
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(400, "send the request as multipart/form-data with a boundary")
    mib = max_bytes / 2**20
    limit = f"the upload is larger than the service's limit of {mib:.3g} MiB (--max-upload-mb)"
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise UploadError(413, limit)
    upload = Upload(folder)
    try:
        sink = _PartSink(params[b"boundary"], upload)
    except FormParserError as err:
        raise UploadError(400, f"malformed multipart body: {err}") from None
    folder.mkdir(parents=True)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise UploadError(413, limit)
            sink.parser.write(chunk)
    except FormParserError as err:
        raise UploadError(400, f"malformed multipart body: {err}") from None
    except ClientDisconnect:
        raise UploadError(400, "the client disconnected during the upload") from None
    finally:
        sink.close()
    if not sink.ended:
        raise UploadError(400, "malformed multipart body: it ends before its closing boundary")
    return upload
