"""Files and (code interpreter) container files of the fake OpenAI server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.openai_model import REC, ApiError, new_id, not_found, paginate

if TYPE_CHECKING:
    from tests.fakes.openai_server import FakeOpenAI

FILE_PURPOSES = {
    "assistants",
    "assistants_output",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
}


class FilesAPI:
    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", "/v1/files", self._create_file),
            ("GET", "/v1/files", self._list_files),
            ("GET", "/v1/files/{fid}", self._get_file),
            ("DELETE", "/v1/files/{fid}", self._delete_file),
            ("GET", "/v1/files/{fid}/content", self._file_content),
            ("GET", "/v1/containers/{cid}/files", self.list_container_files),
            ("GET", "/v1/containers/{cid}/files/{fid}", self.get_container_file),
            ("GET", "/v1/containers/{cid}/files/{fid}/content", self.container_file_content),
        ]

    async def _create_file(self, request: web.Request) -> web.Response:
        form = request[REC].form
        if form is None:
            raise ApiError(400, "Expected a multipart/form-data body with 'file' and 'purpose'.")
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(upload, dict):
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        if not isinstance(purpose, str) or not purpose:
            raise ApiError(400, "Missing required parameter: 'purpose'.", param="purpose")
        if purpose not in FILE_PURPOSES:
            raise ApiError(
                400,
                f"Invalid value for 'purpose': '{purpose}'.",
                param="purpose",
                code="invalid_value",
            )
        file_id = self.fake.add_file(upload["filename"] or "upload", upload["bytes"], purpose)
        return web.json_response(self.fake.file_object(file_id))

    async def _list_files(self, request: web.Request) -> web.Response:
        purpose = request.query.get("purpose")
        objs = [
            self.fake.file_object(fid)
            for fid, f in self.fake.files.items()
            if purpose is None or f["purpose"] == purpose
        ]
        return web.json_response(paginate(objs, request[REC].query))

    async def _get_file(self, request: web.Request) -> web.Response:
        return web.json_response(self.fake.file_object(request.match_info["fid"]))

    async def _delete_file(self, request: web.Request) -> web.Response:
        fid = request.match_info["fid"]
        self.fake.require_file(fid)
        del self.fake.files[fid]
        return web.json_response({"id": fid, "object": "file", "deleted": True})

    async def _file_content(self, request: web.Request) -> web.Response:
        f = self.fake.require_file(request.match_info["fid"])
        return web.Response(body=f["bytes"], content_type="application/octet-stream")

    def add_container_file(self, cid: str, filename: str | None, content: bytes) -> str:
        fid = new_id("cfile_", hex_len=32)
        filename = filename or f"{fid}.png"
        self.fake.containers[cid][fid] = {
            "filename": filename,
            "bytes": content,
            "path": f"/mnt/data/{filename}",
            "created_at": self.fake.now(),
        }
        return fid

    def _container_file(self, cid: str, fid: str) -> dict:
        if cid not in self.fake.containers:
            raise not_found(f"Container with id '{cid}' not found.")
        f = self.fake.containers[cid].get(fid)
        if f is None:
            raise not_found(f"File with id '{fid}' not found in container '{cid}'.")
        return f

    def _container_file_obj(self, cid: str, fid: str) -> dict:
        f = self._container_file(cid, fid)
        return {
            "id": fid,
            "object": "container.file",
            "bytes": len(f["bytes"]),
            "container_id": cid,
            "created_at": f["created_at"],
            "path": f["path"],
            "source": "assistant",
        }

    async def list_container_files(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        if cid not in self.fake.containers:
            raise not_found(f"Container with id '{cid}' not found.")
        objs = [self._container_file_obj(cid, fid) for fid in self.fake.containers[cid]]
        return web.json_response(paginate(objs, request[REC].query))

    async def get_container_file(self, request: web.Request) -> web.Response:
        m = request.match_info
        return web.json_response(self._container_file_obj(m["cid"], m["fid"]))

    async def container_file_content(self, request: web.Request) -> web.Response:
        m = request.match_info
        f = self._container_file(m["cid"], m["fid"])
        return web.Response(body=f["bytes"], content_type="application/octet-stream")
