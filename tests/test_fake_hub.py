"""The fake Hub (tests/fake_hub.py) against the real clients: huggingface_hub, datasets and peft.

No mocks: every call below goes through the libraries' own HTTP code to the server conftest starts.
Besides proving the fake is good enough, these tests pin down what the clients do on their own
(retries, skipped re-uploads) so that `factory/hub.py` adds exactly what is missing.

What huggingface_hub 2.4 retries by itself (`http_backoff`: 5 retries on 408/429/500/502/503/504
and on timeouts / network errors / dropped connections; waits 1, 2, 4, 8, 8 s, or `Retry-After`
+ 1 s on a 429):
- retried: the upload steps of `upload_folder` / `create_commit` / `preupload_lfs_files`
  (`/preupload`, the LFS batch call, the LFS PUT), paginated listings (`list_repo_commits`,
  `list_repo_tree`, ...), the metadata HEAD of `hf_hub_download` when the file is not cached yet
  (not on a dropped connection, and not with `force_download=True`), and the content GET on a 429
  or a dropped connection (up to 5 resumes, 1 s apart, from the bytes already received).
- NOT retried: the commit POST itself (a 429, 5xx or a dropped connection fails the whole upload;
  the files already uploaded stay on the server), `create_repo`, `delete_repo`, `create_tag`,
  `create_branch`, `repo_info`/`model_info`/`dataset_info`/`space_info` (so also the first step of
  `snapshot_download`), the content GET on a 5xx, and `validate-yaml`.
- A dropped connection surfaces as `httpx2.RemoteProtocolError`, not as an `HfHubHTTPError`.
- datasets' `push_to_hub` means to retry its final commit on 409/412, but checks
  `err.__context__` for an `HfHubHTTPError` while huggingface_hub chains the raw
  `httpx2.HTTPStatusError`: a 412 fails the push at once.
- Re-uploading identical content makes no commit: `create_commit` compares the oids `/preupload`
  returns, skips unchanged files and, with nothing left, returns the current head's sha.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx2
import pytest
from fake_hub import OffMachineRequestError
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    RepoCard,
    SpaceCard,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

pytestmark = pytest.mark.slow  # starts servers or trains models

CONFIGS = {
    "cot-L1": [{"question": "1+1?", "completion": "2"}, {"question": "2+2?", "completion": "4"}],
    "cot-L3": [{"question": "3*3?", "completion": "Step 1: 3*3 = 9. The answer is 9."}],
}
SPACE_README = """---
title: Tiny students
emoji: 🧮
colorFrom: blue
colorTo: green
sdk: gradio
sdk_version: 5.0.0
app_file: app.py
pinned: false
short_description: Try the distilled students
---
# Tiny students
"""


def new_repo_id(kind: str) -> str:
    return f"tester/{kind}-{uuid.uuid4().hex[:8]}"


def commit_posts(fake_hub) -> list:
    return [r for r in fake_hub.requests if r.method == "POST" and "/commit/" in r.path]


def write_dataset_folder(folder: Path, configs: dict[str, list[dict]]) -> Path:
    """`{config}/train-00000-of-00001.parquet` per config and a README declaring them."""
    from datasets import Dataset

    lines = ["---", "license: mit", "pretty_name: Fake CoT", "configs:"]
    for i, (name, rows) in enumerate(configs.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        Dataset.from_list(rows).to_parquet(folder / name / "train-00000-of-00001.parquet")
        lines += [f"- config_name: {name}", "  data_files:", "  - split: train"]
        lines += [f"    path: {name}/train-*"] + (["  default: true"] if i == 0 else [])
    (folder / "README.md").write_text("\n".join([*lines, "---", "# Fake CoT", ""]))
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and ".cache" not in p.parts
    }


# -- environment ---------------------------------------------------------------------------------


def test_environment_points_every_client_at_the_fake(fake_hub):
    import datasets.config
    from huggingface_hub import constants

    assert constants.ENDPOINT == datasets.config.HF_ENDPOINT == fake_hub.url
    assert constants.HF_HUB_DISABLE_XET and not constants.is_offline_mode()
    assert datasets.config.USE_PARQUET_EXPORT is False
    assert HfApi().whoami()["name"] == "tester"  # HF_TOKEN is the fake's write token


def test_guard_refuses_any_host_but_loopback():
    from huggingface_hub.utils import get_session

    with pytest.raises(OffMachineRequestError):
        get_session().get("https://huggingface.co/api/whoami-v2")
    with pytest.raises(OffMachineRequestError):
        HfApi(endpoint="https://huggingface.co").model_info("gpt2")


def test_an_accidental_hub_call_fails_fast_with_a_404(fake_hub):
    fake_hub.clear_log()
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert [r.status for r in fake_hub.requests] == [404]


# -- repos ---------------------------------------------------------------------------------------


def test_create_repo_types_visibility_and_exist_ok(hf_api, fake_hub):
    model, dataset, space = new_repo_id("m"), new_repo_id("d"), new_repo_id("s")
    url = hf_api.create_repo(model)
    assert url == f"{fake_hub.url}/{model}" and url.repo_id == model
    assert hf_api.create_repo(model, exist_ok=True) == url
    with pytest.raises(HfHubHTTPError) as conflict:
        hf_api.create_repo(model)
    assert conflict.value.response.status_code == 409
    hf_api.create_repo(dataset, repo_type="dataset", private=True)
    hf_api.create_repo(space, repo_type="space", space_sdk="gradio")

    info = hf_api.model_info(model)
    assert info.id == model and len(info.sha) == 40 and info.private is False
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]
    assert hf_api.dataset_info(dataset).private is True
    assert hf_api.space_info(space).sdk == "gradio"
    with pytest.raises(RepositoryNotFoundError):  # a private repo, asked anonymously
        hf_api.dataset_info(dataset, token=False)
    assert HfApi(token=fake_hub.read_token).dataset_info(dataset).id == dataset
    hf_api.delete_repo(model)
    with pytest.raises(RepositoryNotFoundError):
        hf_api.model_info(model)


# -- datasets ------------------------------------------------------------------------------------


def test_multi_config_dataset_one_commit_tag_and_load_dataset(hf_api, fake_hub, tmp_path):
    from datasets import load_dataset

    repo = new_repo_id("cot")
    folder = write_dataset_folder(tmp_path / "ds", CONFIGS)
    hf_api.create_repo(repo, repo_type="dataset")
    fake_hub.clear_log()
    commit = hf_api.upload_folder(folder_path=folder, repo_id=repo, repo_type="dataset")
    hf_api.create_tag(repo, tag="v1", repo_type="dataset")

    assert len(commit_posts(fake_hub)) == 1  # the whole folder in one commit
    assert ("POST", f"/api/datasets/{repo}/tag/main", 200) in fake_hub.requests
    refs = hf_api.list_repo_refs(repo, repo_type="dataset")
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", commit.oid)]
    history = hf_api.list_repo_commits(repo, repo_type="dataset")
    assert [c.commit_id for c in history][:1] == [commit.oid] and len(history) == 2
    info = hf_api.dataset_info(repo)
    assert [c["config_name"] for c in info.card_data.configs] == list(CONFIGS)
    parquet = [s for s in info.siblings if s.rfilename.endswith(".parquet")]
    assert len(parquet) == 2 and all(s.lfs is not None for s in parquet)  # parquet goes to LFS

    for name, rows in CONFIGS.items():
        assert load_dataset(repo, name, split="train", revision="v1").to_list() == rows
    assert load_dataset(repo, split="train", revision=commit.oid).to_list() == CONFIGS["cot-L1"]


def test_snapshot_download_by_sha_and_tag_returns_identical_bytes(hf_api, tmp_path):
    repo = new_repo_id("snap")
    folder = write_dataset_folder(tmp_path / "ds", CONFIGS)
    hf_api.create_repo(repo, repo_type="dataset")
    first = hf_api.upload_folder(folder_path=folder, repo_id=repo, repo_type="dataset")
    hf_api.create_tag(repo, tag="first", repo_type="dataset")
    (folder / "README.md").write_text((folder / "README.md").read_text() + "More text.\n")
    second = hf_api.upload_folder(folder_path=folder, repo_id=repo, repo_type="dataset")
    assert second.oid != first.oid

    for rev in (first.oid, "first"):
        snapshot = Path(snapshot_download(repo, repo_type="dataset", revision=rev))
        got = files_of(snapshot)
        assert got.pop(".gitattributes")  # the Hub's initial commit adds it, as here
        assert got == files_of(folder) | {"README.md": got["README.md"]}
        assert b"More text" not in got["README.md"]
    latest = files_of(Path(snapshot_download(repo, repo_type="dataset", local_dir=tmp_path / "l")))
    assert latest["README.md"] == (folder / "README.md").read_bytes()


def test_identical_reupload_makes_no_commit(hf_api, fake_hub, tmp_path):
    """The client asks `/preupload`, sees every oid unchanged, skips the commit and returns the
    current head: no new commit, no LFS PUT (the LFS batch call still happens)."""
    repo = new_repo_id("same")
    folder = write_dataset_folder(tmp_path / "ds", CONFIGS)
    hf_api.create_repo(repo, repo_type="dataset")
    first = hf_api.upload_folder(folder_path=folder, repo_id=repo, repo_type="dataset")
    fake_hub.clear_log()
    again = hf_api.upload_folder(folder_path=folder, repo_id=repo, repo_type="dataset")

    assert again.oid == first.oid == fake_hub.head(repo, "dataset")
    assert commit_posts(fake_hub) == []
    assert not [r for r in fake_hub.requests if r.method == "PUT"]


def test_datasets_push_to_hub_replaces_its_shards(fake_hub):
    """`push_to_hub` uploads each parquet shard (LFS), then commits once with `parentCommit`,
    deleting the shards of the previous push that the new one does not overwrite."""
    from datasets import Dataset, load_dataset
    from huggingface_hub import HfApi

    repo = new_repo_id("push")
    Dataset.from_dict({"x": [1, 2, 3, 4]}).push_to_hub(repo, config_name="nums", num_shards=2)
    fake_hub.clear_log()
    Dataset.from_dict({"x": [5, 6]}).push_to_hub(repo, config_name="nums")

    assert len(commit_posts(fake_hub)) == 1
    files = {s.rfilename for s in HfApi().dataset_info(repo).siblings}
    assert {f for f in files if f.endswith(".parquet")} == {"nums/train-00000-of-00001.parquet"}
    assert load_dataset(repo, "nums", split="train")["x"] == [5, 6]


def test_datasets_push_to_hub_does_not_retry_a_412(fake_hub):
    """datasets' retry loop for 409/412 looks at `err.__context__`, which is the raw
    `httpx2.HTTPStatusError`: the push fails on the first 412 and nothing is committed."""
    from datasets import Dataset

    repo = new_repo_id("push412")
    Dataset.from_dict({"x": [1]}).push_to_hub(repo)
    head = fake_hub.head(repo, "dataset")
    fake_hub.fail_next(412, path_contains=f"/{repo}/commit/")
    with pytest.raises(HfHubHTTPError) as failed:
        Dataset.from_dict({"x": [2]}).push_to_hub(repo)
    assert failed.value.response.status_code == 412
    assert fake_hub.head(repo, "dataset") == head


# -- adapters and spaces -------------------------------------------------------------------------


def test_peft_adapter_round_trip_by_tag(hf_api, tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    saved = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    model.save_pretrained(tmp_path / "adapter")
    repo = new_repo_id("adapter")
    hf_api.create_repo(repo)
    hf_api.upload_folder(folder_path=tmp_path / "adapter", repo_id=repo)
    hf_api.create_tag(repo, tag="r1")
    hf_api.upload_file(path_or_fileobj=b"later", path_in_repo="notes.txt", repo_id=repo)

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    loaded = get_peft_model_state_dict(PeftModel.from_pretrained(base, repo, revision="r1"))
    assert saved.keys() == loaded.keys() and any(v.abs().sum() > 0 for v in saved.values())
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    info = hf_api.model_info(repo, revision="r1")
    weights = next(s for s in info.siblings if s.rfilename == "adapter_model.safetensors")
    assert weights.lfs is not None and "notes.txt" not in {s.rfilename for s in info.siblings}


def test_space_repo_card_and_info(hf_api, tmp_path):
    repo = new_repo_id("space")
    folder = tmp_path / "space"
    folder.mkdir()
    (folder / "README.md").write_text(SPACE_README)
    (folder / "app.py").write_text("import gradio as gr\n")
    (folder / "requirements.txt").write_text("peft\n")
    hf_api.create_repo(repo, repo_type="space", space_sdk="gradio")
    hf_api.upload_folder(folder_path=folder, repo_id=repo, repo_type="space")

    readme = hf_hub_download(repo, "README.md", repo_type="space")
    assert Path(readme).read_text() == SPACE_README
    assert SpaceCard.load(readme).data.sdk == "gradio"
    card = RepoCard.load(repo, repo_type="space")
    assert card.data.title == "Tiny students" and card.data.app_file == "app.py"
    info = hf_api.space_info(repo)
    assert info.sdk == "gradio" and info.card_data.short_description == "Try the distilled students"
    assert {s.rfilename for s in info.siblings} >= {"README.md", "app.py", "requirements.txt"}


# -- errors --------------------------------------------------------------------------------------


def test_not_found_errors_carry_the_hub_codes(hf_api, fake_hub, tmp_path):
    repo = new_repo_id("nf")
    hf_api.create_repo(repo)
    hf_api.upload_file(path_or_fileobj=b"abcdef", path_in_repo="a.txt", repo_id=repo)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("tester/absent", "a.txt", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo, "a.txt", revision="no-such-tag", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        hf_api.model_info(repo, revision="0" * 40)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo, "missing.txt", cache_dir=tmp_path)
    assert hf_api.file_exists(repo, "a.txt") and not hf_api.file_exists(repo, "b.txt")

    from huggingface_hub.utils import get_session

    ranged = get_session().get(
        f"{fake_hub.url}/{repo}/resolve/main/a.txt", headers={"Range": "bytes=2-4"}
    )
    assert ranged.status_code == 206 and ranged.content == b"cde"
    xet = get_session().get(f"{fake_hub.url}/api/models/{repo}/xet-write-token/main")
    assert xet.status_code == 501 and "HF_HUB_DISABLE_XET" in xet.json()["error"]


def test_invalid_card_yaml_is_refused_before_any_upload(hf_api, fake_hub):
    repo = new_repo_id("yaml")
    hf_api.create_repo(repo)
    fake_hub.clear_log()
    with pytest.raises(ValueError, match="Invalid metadata"):
        hf_api.upload_file(
            path_or_fileobj=b"---\nkey: [unclosed\n---\n", path_in_repo="README.md", repo_id=repo
        )
    assert [r.path for r in fake_hub.requests] == ["/api/validate-yaml"]


def test_stale_parent_commit_is_refused_with_412(hf_api, fake_hub):
    repo = new_repo_id("parent")
    hf_api.create_repo(repo)
    old = fake_hub.head(repo)
    hf_api.upload_file(path_or_fileobj=b"one", path_in_repo="a.txt", repo_id=repo)
    with pytest.raises(HfHubHTTPError) as stale:
        hf_api.create_commit(
            repo,
            [CommitOperationAdd("a.txt", b"two")],
            commit_message="racing",
            parent_commit=old,
        )
    assert stale.value.response.status_code == 412
    assert Path(hf_api.hf_hub_download(repo, "a.txt")).read_bytes() == b"one"


def test_bad_token_is_401_and_read_only_token_is_403(fake_hub, hf_api):
    repo = new_repo_id("auth")
    hf_api.create_repo(repo)
    bad = HfApi(endpoint=fake_hub.url, token="hf_not_a_real_token")
    with pytest.raises(HfHubHTTPError, match="Invalid user token") as whoami:
        bad.whoami()
    assert whoami.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as create:
        bad.create_repo(new_repo_id("nope"))
    assert create.value.response.status_code == 401 and type(create.value) is HfHubHTTPError

    reader = HfApi(endpoint=fake_hub.url, token=fake_hub.read_token)
    assert reader.whoami()["auth"]["accessToken"]["role"] == "read"
    assert reader.model_info(repo).id == repo
    for write in (
        lambda: reader.create_repo(new_repo_id("nope")),
        lambda: reader.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo),
        lambda: reader.create_tag(repo, tag="v1"),
    ):
        with pytest.raises(HfHubHTTPError) as forbidden:
            write()
        assert forbidden.value.response.status_code == 403


# -- faults and the client's own retries ---------------------------------------------------------


def test_upload_steps_before_the_commit_retry_by_themselves(hf_api, fake_hub, tmp_path):
    """`/preupload`, the LFS batch call and the LFS PUT go through `http_backoff`: a 429 (waits
    Retry-After + 1 s), a 500 (waits 1 s) and a dropped connection (1 s) are each retried."""
    repo = new_repo_id("retry")
    folder = write_dataset_folder(tmp_path / "ds", CONFIGS)
    hf_api.create_repo(repo, repo_type="dataset")
    fake_hub.clear_log()
    fake_hub.fail_next(429, path_contains="/preupload/")
    fake_hub.fail_next(500, path_contains="/info/lfs/objects/batch")
    fake_hub.fail_next("drop", path_contains="/info/lfs/objects/", method="PUT")
    commit = hf_api.upload_folder(folder_path=folder, repo_id=repo, repo_type="dataset")

    def statuses(part: str, method: str = "POST") -> list:
        return [r.status for r in fake_hub.requests if part in r.path and r.method == method]

    assert statuses("/preupload/") == [429, 200]
    assert statuses("/info/lfs/objects/batch") == [500, 200]
    uploads = statuses("/info/lfs/objects/", "PUT")
    assert sorted(map(str, uploads)) == ["200", "200", "drop"]  # 2 parquet files, 1 dropped once
    assert len(commit_posts(fake_hub)) == 1 and commit.oid == fake_hub.head(repo, "dataset")


@pytest.mark.parametrize("fault", [429, 500, 503, "drop"])
def test_the_commit_call_is_not_retried(hf_api, fake_hub, fault):
    """The commit POST goes out once: any failure fails `upload_file`/`upload_folder`/
    `create_commit`, and nothing is committed. A dropped connection raises httpx2's
    `RemoteProtocolError`, not an `HfHubHTTPError`."""
    repo = new_repo_id("commit")
    hf_api.create_repo(repo)
    head = fake_hub.head(repo)
    fake_hub.clear_log()
    fake_hub.fail_next(fault, path_contains="/commit/")
    expected = httpx2.RemoteProtocolError if fault == "drop" else HfHubHTTPError
    with pytest.raises(expected):
        hf_api.upload_file(path_or_fileobj=b"data", path_in_repo="a.txt", repo_id=repo)
    assert [r.status for r in commit_posts(fake_hub)] == [fault]
    assert fake_hub.head(repo) == head


def test_a_lost_commit_answer_leaves_a_landed_commit(hf_api, fake_hub):
    """The server committed but its answer never came: the client raises, the repo moved on.
    Retrying the same upload is harmless (every file is unchanged: no commit, the landed sha comes
    back); a retry pinned with `parent_commit` to the head seen before gets a 412."""
    repo = new_repo_id("lost")
    hf_api.create_repo(repo)
    before = fake_hub.head(repo)
    fake_hub.fail_next("drop_after", path_contains="/commit/")
    with pytest.raises(httpx2.RemoteProtocolError):
        hf_api.upload_file(path_or_fileobj=b"data", path_in_repo="a.txt", repo_id=repo)
    landed = fake_hub.head(repo)
    assert landed != before
    fake_hub.clear_log()
    again = hf_api.upload_file(path_or_fileobj=b"data", path_in_repo="a.txt", repo_id=repo)
    assert again.oid == landed and commit_posts(fake_hub) == []
    with pytest.raises(HfHubHTTPError) as stale:
        hf_api.create_commit(
            repo, [CommitOperationAdd("b.txt", b"more")], commit_message="x", parent_commit=before
        )
    assert stale.value.response.status_code == 412


def test_repo_ref_and_info_calls_are_not_retried(hf_api, fake_hub):
    """`create_repo`, `create_tag`, `model_info` (and the other single-request API calls) use the
    shared client directly: one 503 or dropped connection and they raise."""
    repo = new_repo_id("noretry")
    hf_api.create_repo(repo)
    calls = [
        ("/api/repos/create", lambda: hf_api.create_repo(new_repo_id("x"))),
        ("/tag/", lambda: hf_api.create_tag(repo, tag="v1")),
        (f"/api/models/{repo}", lambda: hf_api.model_info(repo)),
    ]
    for path, call in calls:
        for fault, error in ((503, HfHubHTTPError), ("drop", httpx2.RemoteProtocolError)):
            fake_hub.clear_log()
            fake_hub.fail_next(fault, path_contains=path)
            with pytest.raises(error):
                call()
            assert [r.status for r in fake_hub.requests] == [fault]


def test_listings_and_downloads_retry_some_failures(hf_api, fake_hub, tmp_path):
    """Paginated listings retry (here a 500); `hf_hub_download` retries its HEAD on a 429 when the
    file is not cached and resumes a dropped GET, but a 5xx on the GET is raised."""
    repo = new_repo_id("dl")
    hf_api.create_repo(repo)
    hf_api.upload_file(path_or_fileobj=b"payload", path_in_repo="a.txt", repo_id=repo)

    fake_hub.clear_log()
    fake_hub.fail_next(500, path_contains="/commits/")
    assert len(hf_api.list_repo_commits(repo)) == 2
    assert [r.status for r in fake_hub.requests] == [500, 200]

    fake_hub.clear_log()
    fake_hub.fail_next(429, path_contains="/resolve/", method="HEAD")
    fake_hub.fail_next("drop", path_contains="/resolve/", method="GET")
    path = hf_hub_download(repo, "a.txt", cache_dir=tmp_path / "c1")
    assert Path(path).read_bytes() == b"payload"
    assert [(r.method, r.status) for r in fake_hub.requests] == [
        ("HEAD", 429),
        ("HEAD", 200),
        ("GET", "drop"),
        ("GET", 200),
    ]

    fake_hub.fail_next(500, path_contains="/resolve/", method="GET")
    with pytest.raises(HfHubHTTPError):
        hf_hub_download(repo, "a.txt", cache_dir=tmp_path / "c2")
