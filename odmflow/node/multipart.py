"""A multipart/form-data body read as it arrives: file parts written straight to disk in chunks.

Nothing is held in memory but a chunk and the (small) form fields; the size limit counts bytes as they
arrive, so an oversized upload stops at the limit, and every file the request wrote is deleted when the
request is refused. A body that ends before its closing boundary (a dropped connection, a client that
died) is refused as busboy refuses it for NodeODM, "Unexpected end of form", and no descriptor stays open
whatever happens.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from odmflow.node.files import Budget, UploadError, create_new, safe_name

MAX_FIELD_BYTES = 1 << 20  # options, outputs and the like


@dataclass
class Received:
    """What a multipart body held: its fields, and the files written (in order)."""

    fields: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    bytes_written: int = 0


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    fd: int | None = None
    data: bytearray = field(default_factory=bytearray)


class _Sink:
    """The parser's callbacks: fields into memory, file parts into new files under `folder`."""

    def __init__(self, folder: Path | None, budget: Budget, file_field: str) -> None:
        self.folder, self.budget, self.file_field = folder, budget, file_field
        self.out = Received()
        self.part = _Part()
        self.ended = False  # the closing boundary arrived
        self._header: list[bytes] = [b"", b""]

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0] += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]

    def header_end(self) -> None:
        self.part.headers[self._header[0].lower()] = self._header[1]
        self._header = [b"", b""]

    def headers_finished(self) -> None:
        _, opts = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        self.part.name = opts.get(b"name", b"").decode("utf-8", "replace")
        filename = opts.get(b"filename")
        if filename is None:
            return
        if self.folder is None or self.part.name != self.file_field:
            raise UploadError(f"Unexpected field {self.part.name!r}: no file is accepted here")
        target, self.part.fd = create_new(self.folder, safe_name(filename.decode("utf-8", "replace")))
        self.out.files.append(target)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.part.fd is None:
            if len(self.part.data) + len(chunk) > MAX_FIELD_BYTES:
                raise UploadError(f"Field {self.part.name!r} is too large")
            self.part.data += chunk
            return
        self.budget.take(len(chunk))
        self.out.bytes_written += len(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.part.fd, view) :]

    def part_end(self) -> None:
        if self.part.fd is not None:
            self.close()
        else:
            self.out.fields[self.part.name] = self.part.data.decode("utf-8", "replace")
        self.part = _Part()

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        """Close the file being written, if any."""
        if self.part.fd is not None:
            fd, self.part.fd = self.part.fd, None
            os.close(fd)

    def abort(self) -> None:
        """Close and delete every file this request wrote."""
        self.close()
        for path in self.out.files:
            path.unlink(missing_ok=True)
        self.budget.give(self.out.bytes_written)


def boundary_of(content_type: str) -> bytes:
    kind, opts = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not opts.get(b"boundary"):
        raise UploadError("Expected a multipart/form-data body")
    return opts[b"boundary"]


async def receive(
    chunks: AsyncIterator[bytes],
    content_type: str,
    folder: Path | None,
    budget: Budget,
    file_field: str = "images",
) -> Received:
    """Read a multipart body; file parts named `file_field` go to new files in `folder`.

    `folder=None` accepts no file (NodeODM's init). Raises UploadError, having deleted what it wrote,
    when a file name is not a base name, a file part comes where none is accepted, the files exceed
    what `budget` has left, or the body ends before its closing boundary.
    """
    sink = _Sink(folder, budget, file_field)
    callbacks = {
        "on_header_field": sink.header_field,
        "on_header_value": sink.header_value,
        "on_header_end": sink.header_end,
        "on_headers_finished": sink.headers_finished,
        "on_part_data": sink.part_data,
        "on_part_end": sink.part_end,
        "on_end": sink.end,
    }
    parser = MultipartParser(boundary_of(content_type), callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
        if not sink.ended:  # python-multipart's finalize() does not check it
            raise UploadError("Unexpected end of form", no_retry=False)
    except MultipartParseError as err:
        sink.abort()
        raise UploadError(f"Malformed multipart body ({err})") from None
    except BaseException:
        sink.abort()
        raise
    finally:
        sink.close()
    return sink.out
