"""Reading multipart uploads within the configured byte limit."""

from fastapi import UploadFile

from mmserve.limits import Limits


async def read_upload(upload: UploadFile, limits: Limits, field: str) -> bytes:
    """The upload's bytes, refused with 413 before reading when its declared size is too large."""
    if upload.size is not None:
        limits.check_upload_size(upload.size, field)
    data = await upload.read()
    limits.check_upload_size(len(data), field)
    return data
