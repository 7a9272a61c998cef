"""From an accepted upload to a queued job: the form fields checked, the files put in place."""

from __future__ import annotations

import time

from gleam_mri.inference import OUTPUT_FORMATS
from gleam_mri.serve.jobs import Job
from gleam_mri.serve.uploads import Upload, UploadError, safe_stem

TRUE = {"true", "1", "yes", "on"}
FALSE = {"false", "0", "no", "off"}

# the multipart body of POST /v1/reconstructions, for the OpenAPI schema
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "raw data: fastMRI / ISMRMRD .h5, twix .dat, BART .cfl",
                        },
                        "header": {
                            "type": "string",
                            "format": "binary",
                            "description": "the BART .hdr of a .cfl upload",
                        },
                        "model": {"type": "string", "description": "a name from /v1/models"},
                        "formats": {
                            "type": "string",
                            "default": "h5",
                            "description": "comma-separated subset of h5,nii,png,dcm",
                        },
                        "undersample": {"type": "boolean", "default": True},
                    },
                }
            }
        },
    }
}


def choose_model(name: str | None, models: list[str]) -> str:
    """The model a job asks for (the only one when it names none)."""
    if not name:
        if len(models) == 1:
            return models[0]
        raise UploadError(400, f"several models are loaded: name one of {models} in 'model'")
    if name not in models:
        raise UploadError(400, f"unknown model {name!r}; loaded: {models}")
    return name


def parse_formats(text: str | None) -> list[str]:
    """``"h5,nii"`` -> ``["h5", "nii"]`` (default ``["h5"]``); unknown formats are an error."""
    if text is None:
        return ["h5"]
    formats = list(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in OUTPUT_FORMATS]
    if unknown or not formats:
        raise UploadError(
            400, f"formats {text!r}: give a comma-separated subset of {','.join(OUTPUT_FORMATS)}"
        )
    return formats


def parse_bool(text: str | None, name: str, default: bool) -> bool:
    """A form field's boolean (``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
    if text is None or not text.strip():
        return default
    value = text.strip().lower()
    if value in TRUE or value in FALSE:
        return value in TRUE
    raise UploadError(400, f"{name} {text!r}: give true or false")


def job_from_upload(job_id: str, upload: Upload, models: list[str]) -> Job:
    """Check an upload's fields and files, rename a BART header beside its ``.cfl``; the job to
    queue. Raises :class:`UploadError` (400) for anything wrong."""
    if "file" not in upload.sizes:
        raise UploadError(400, "the multipart field 'file' (the raw data file) is missing")
    if upload.sizes["file"] == 0:
        raise UploadError(400, "the uploaded file is empty")
    fields = upload.fields
    model = choose_model(fields.get("model"), models)
    formats = parse_formats(fields.get("formats"))
    undersample = parse_bool(fields.get("undersample"), "undersample", True)
    header = upload.folder / "header.part"
    if upload.input_name.endswith(".cfl"):
        if "header" not in upload.sizes:
            raise UploadError(400, "a BART .cfl upload needs its .hdr in the field 'header'")
        if upload.sizes["header"] == 0:
            raise UploadError(400, "the uploaded .hdr header is empty")
        header.replace(upload.folder / "input.hdr")
    elif header.exists():
        header.unlink()  # only a .cfl has a header file
    return Job(
        id=job_id,
        state="queued",
        model=model,
        file_name=upload.file_name,
        input_name=upload.input_name,
        stem=safe_stem(upload.file_name),
        formats=formats,
        undersample=undersample,
        created_at=time.time(),
    )
