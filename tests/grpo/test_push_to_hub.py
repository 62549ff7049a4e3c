"""push_to_hub: the upload goes through huggingface_hub's HfApi; a failed upload never loses the adapter.

No hub is reachable from these machines, so an API object stands in for HfApi at the function's seam.
"""
from __future__ import annotations

import logging

from pipelines.grpo.node import push_adapter


class RecordingApi:
    def __init__(self, fail: Exception | None = None):
        self.calls, self.fail = [], fail

    def create_repo(self, repo_id, private, exist_ok):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        if self.fail:
            raise self.fail

    def upload_folder(self, folder_path, repo_id, commit_message):
        self.calls.append(("upload_folder", folder_path, repo_id))


def test_push_creates_a_private_repo_and_uploads_the_folder(tmp_path):
    api = RecordingApi()
    assert push_adapter(tmp_path, "me/adapter", True, api=api) is True
    assert api.calls == [("create_repo", "me/adapter", True, True), ("upload_folder", str(tmp_path), "me/adapter")]


def test_failed_push_is_logged_with_the_way_to_retry(tmp_path, caplog):
    api = RecordingApi(fail=ConnectionError("no route to host"))
    with caplog.at_level(logging.ERROR):
        assert push_adapter(tmp_path, "me/adapter", False, api=api) is False
    assert "push_to_hub to me/adapter failed (ConnectionError: no route to host)" in caplog.text
    assert f"huggingface-cli upload me/adapter {tmp_path}" in caplog.text
