"""The whole path with the real tiny model: build, sign, publish, update from a directory
and from the hub over HTTP, serve cases with it; hot reload without losing queued work;
fallback to the previous slot; the server's own hub check; a wrong clock."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edge_server import keys as app_keys
from edge_server.sync_wiring import save_hub_config
from kb_builder.embedding import DEMO_MODEL_ID, LlamaCppEmbedder, ensure_demo_gguf
from kb_builder.index import build_index
from skinspector.cli import cli
from tests.review_hub.hub_harness import running_hub
from tests.updates.helpers import (
    RealBundles,
    assert_serving,
    clinic_server,
    fake_bundle,
    info,
    install,
    make_repo,
    no_smoke,
    post_case,
    wait_case,
    wait_for_version,
    wait_until,
)
from updates.client import UpdateClient
from updates.clock import TrustedTime
from updates.errors import ExpiredMetadataError
from updates.fetcher import UpdateSource
from updates.service import run_update
from updates.slots import SlotStore

pytestmark = pytest.mark.slow


def run(*args: str | Path) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result


def test_happy_path_build_publish_update_and_serve(
    tmp_path: Path, real_bundles: RealBundles, cache_dir: Path
) -> None:
    demo = real_bundles.demo
    card = tmp_path / "CARD.md"
    card.write_text(run("bundle", "card-template").stdout)
    common = [
        "--model", demo / "tiny-qwen2.5-vl-q4_k_m.gguf",
        "--mmproj", demo / "mmproj-tiny-qwen2.5-vl-f16.gguf",
        "--index", demo / "index",
        "--embedder", demo / "index" / "embedder" / "all-MiniLM-L6-v2-f16.gguf",
        "--card", card,
    ]  # fmt: skip
    run("bundle", "build", *common, "--version", "1.0.0", "--out", tmp_path / "b1")
    run("bundle", "build", *common, "--version", "1.1.0", "--out", tmp_path / "b2.tar")
    hub_dir, keys, data = tmp_path / "hub", tmp_path / "keys", tmp_path / "clinic"
    repo = hub_dir / "updates"  # the hub serves this directory under /updates/
    run("bundle", "keys", "init", "--keys", keys, "--repo", repo)
    run("bundle", "publish", tmp_path / "b1", "--repo", repo, "--keys", keys)

    with clinic_server(data, cache_dir) as live:  # nothing installed: the demo bundle
        live.wait_ready()
        token = live.pair()
        assert info(live, token)["demo"] is True

        # From a directory (a USB stick), with the real smoke test.
        root = repo / "metadata" / "1.root.json"
        result = run("update", "--data-dir", data, "--init-root", root, "--from", repo)
        # The result line is on stdout, after the progress bars (stderr) closed.
        assert "installed bundle 1.0.0 into slot-a" in result.stdout
        assert "installed bundle" not in result.stderr
        wait_for_version(live, token, "1.0.0")
        body = info(live, token)
        assert body["demo"] is False
        assert body["bundle_slot"] == "slot-a"
        assert body["intended_use"].startswith("Decision support for trained health workers")
        case = wait_case(live, token, post_case(live, token, 1))
        assert case["status"] == "done"
        assert case["result"]["audit"]["bundle_version"] == "1.0.0"
        assert case["result"]["audit"]["intended_use"] == body["intended_use"]

        # From the hub over HTTP on 127.0.0.1.
        run("bundle", "publish", tmp_path / "b2.tar", "--repo", repo, "--keys", keys)
        with running_hub(hub_dir) as hub:
            result = run("update", "--data-dir", data, "--from", f"{hub.url}/updates/", "--json")
        outcome = json.loads(result.stdout)  # --json: stdout is the result alone
        assert (outcome["status"], outcome["version"], outcome["slot"]) == (
            "installed",
            "1.1.0",
            "slot-b",
        )
        assert outcome["previous_version"] == "1.0.0"
        wait_for_version(live, token, "1.1.0")
        case = wait_case(live, token, post_case(live, token, 2))
        assert case["status"] == "done"
        assert case["result"]["audit"]["bundle_version"] == "1.1.0"
        assert_serving(live, token, "1.1.0")

    status = json.loads(run("bundle", "status", "--data-dir", data, "--json").stdout)
    assert (status["active_version"], status["previous_version"]) == ("1.1.0", "1.0.0")
    assert status["trusted_root"]["version"] == 1
    again = run("update", "--data-dir", data, "--from", repo)
    assert "up to date" in again.stdout


def _small_index(out: Path, cache_dir: Path) -> Path:
    docs = out.parent / "docs"
    docs.mkdir(parents=True)
    (docs / "zz_tropical.md").write_text(
        "# Tropical test entry\n\nA made-up condition for the update tests: zzyzx rash.\n\n"
        "## Signs\n\nRing-shaped zzyzx plaques on the forearm, itchy at night.\n"
    )
    embedder = LlamaCppEmbedder(ensure_demo_gguf(cache_dir), DEMO_MODEL_ID)
    try:
        build_index([docs], out, embedder, progress=False)
    finally:
        embedder.close()
    return out


def test_hot_reload_keeps_queued_work(
    tmp_path: Path, real_bundles: RealBundles, cache_dir: Path
) -> None:
    data = tmp_path / "clinic"
    install(data, real_bundles.archives["1.0.0"])
    small = real_bundles.build("1.2.0", index=_small_index(tmp_path / "small" / "index", cache_dir))
    with clinic_server(data, cache_dir, queue_size=16) as live:
        live.wait_ready()
        token = live.pair()
        queued = [post_case(live, token, seed) for seed in range(4)]
        install(data, real_bundles.archives["1.1.0"])  # activated while cases wait
        results = [wait_case(live, token, case_id) for case_id in queued]
        assert [r["status"] for r in results] == ["done"] * 4  # none lost, none failed
        versions = [r["result"]["audit"]["bundle_version"] for r in results]
        assert versions == sorted(versions)  # one switch, between two analyses
        wait_for_version(live, token, "1.1.0")
        after = wait_case(live, token, post_case(live, token, 9))
        assert after["result"]["audit"]["bundle_version"] == "1.1.0"

        # The next bundle goes into slot-a again: a new index at the same path.
        install(data, small)
        wait_for_version(live, token, "1.2.0")
        retriever = live.running.app[app_keys.RUNTIME].require_analyzer().retriever
        assert retriever is not None
        pool = retriever.candidates("zzyzx rash on the forearm")
        assert len(pool.rows) == len(retriever) == 2  # the new index, not a cached old one
        hits = retriever.search("zzyzx plaques forearm", k=2)
        assert hits
        assert all(h.source.endswith("zz_tropical.md") for h in hits)
        case = wait_case(live, token, post_case(live, token, 10))
        assert case["status"] == "done"
        assert case["result"]["audit"]["bundle_version"] == "1.2.0"

        # Rollback from the CLI: the server follows.
        run("bundle", "rollback", "--data-dir", data)
        wait_for_version(live, token, "1.1.0")
        assert_serving(live, token, "1.1.0")
    assert SlotStore(data / "bundles").state().held_back == ("1.2.0",)


def test_falls_back_to_the_previous_slot_when_the_active_fails_to_load(
    tmp_path: Path, real_bundles: RealBundles, cache_dir: Path
) -> None:
    data = tmp_path / "clinic"
    install(data, real_bundles.archives["1.0.0"])
    install(data, real_bundles.archives["1.1.0"])
    model = next((data / "bundles" / "slot-b" / "model").glob("*q4_k_m.gguf"))
    size = model.stat().st_size
    model.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(size - 8))  # damaged disk
    with clinic_server(data, cache_dir) as live:
        live.wait_ready()
        token = live.pair()
        body = info(live, token)
        assert body["bundle_version"] == "1.0.0"
        assert body["bundle_slot"] == "slot-a"
        assert body["bundle_fallback"]["failed"] == "slot-b"
        assert body["bundle_fallback"]["failed_version"] == "1.1.0"
        assert "cannot load" in body["bundle_fallback"]["reason"]
        assert_serving(live, token, "1.0.0")
        slots = SlotStore(data / "bundles")
        assert slots.serving() == ("slot-a", "slot-b")  # updates will replace slot-b
        # The operator makes it official: the fallback note goes away, nothing reloads.
        run("bundle", "rollback", "--data-dir", data)
        wait_until(lambda: "bundle_fallback" not in info(live, token))
        assert_serving(live, token, "1.0.0")
        wait_until(lambda: slots.serving() == ("slot-a", None))


def test_the_server_checks_the_hub_and_hot_reloads(
    tmp_path: Path, real_bundles: RealBundles, cache_dir: Path
) -> None:
    hub_dir, data = tmp_path / "hub", tmp_path / "clinic"
    signed = make_repo(tmp_path / "maintainer", real_bundles.archives["1.1.0"])
    signed.copy(hub_dir / "updates")
    install(data, real_bundles.archives["1.0.0"])
    UpdateClient(data / "updates").provision(signed.root_bytes())
    with running_hub(hub_dir) as hub:
        save_hub_config(data, hub.url, hub.identity())
        updates = {"check_hub": True, "first_check_seconds": 0.2, "interval_seconds": 3600}
        with clinic_server(data, cache_dir, updates=updates) as live:
            live.wait_ready()
            token = live.pair()
            wait_for_version(live, token, "1.1.0", timeout=300)  # real smoke test included
            assert_serving(live, token, "1.1.0")
    assert SlotStore(data / "bundles").status()["previous_version"] == "1.0.0"


def test_a_wrong_clock_never_disables_the_active_bundle(
    tmp_path: Path, real_bundles: RealBundles, cache_dir: Path
) -> None:
    data = tmp_path / "clinic"
    install(data, real_bundles.archives["1.0.0"])
    signed = make_repo(tmp_path / "maintainer", fake_bundle(tmp_path, "1.1.0"))
    client = UpdateClient(data / "updates")
    client.provision(signed.root_bytes())
    # The box once saw metadata "signed" in 2099 and its own clock reads today: every piece
    # of metadata now looks expired to it.
    TrustedTime(datetime(2099, 1, 1, tzinfo=UTC)).save(client.time_file)
    with clinic_server(data, cache_dir) as live:
        live.wait_ready()
        token = live.pair()
        assert_serving(live, token, "1.0.0")
        with pytest.raises(ExpiredMetadataError, match="clock is behind"):
            run_update(data, UpdateSource.parse(str(signed.path)), smoke=no_smoke)
        assert_serving(live, token, "1.0.0")
