"""``skinspector hub ...`` commands (invoked on the group directly)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from review_hub.passwords import verify_password
from review_hub.store import HubStore
from skinspector.cli.hub import hub
from sync_agent.keys import PartyKeys, PublicIdentity, generate_keys


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_every_command_has_help(runner: CliRunner) -> None:
    for command in ("serve", "enrol-clinic", "revoke-clinic", "clinics", "add-reviewer"):
        result = runner.invoke(hub, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "--data-dir" in result.output


def test_enrol_list_and_revoke_a_clinic(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "hub"
    clinic = generate_keys()
    identity_file = tmp_path / "clinic.json"
    identity_file.write_text(clinic.public().to_json())

    result = runner.invoke(
        hub,
        [
            "enrol-clinic",
            "--data-dir",
            str(data),
            "--name",
            "Clinic A",
            "--identity",
            str(identity_file),
        ],
    )
    assert result.exit_code == 0, result.output
    printed = PublicIdentity.from_json(result.stdout)
    assert printed == PartyKeys.load(data / "hub-keys.json").public()
    assert f"enrolled: Clinic A ({clinic.party_id})" in result.stderr

    again = runner.invoke(
        hub,
        [
            "enrol-clinic",
            "--data-dir",
            str(data),
            "--name",
            "Clinic A2",
            "--identity",
            str(identity_file),
        ],
    )
    assert again.exit_code == 0, again.output
    assert PublicIdentity.from_json(again.stdout) == printed  # same hub keys

    listed = runner.invoke(hub, ["clinics", "--data-dir", str(data)])
    assert listed.exit_code == 0
    assert clinic.party_id in listed.output
    assert "active" in listed.output
    assert "Clinic A2" in listed.output

    revoked = runner.invoke(hub, ["revoke-clinic", "--data-dir", str(data), clinic.party_id])
    assert revoked.exit_code == 0, revoked.output
    twice = runner.invoke(hub, ["revoke-clinic", "--data-dir", str(data), clinic.party_id])
    assert twice.exit_code == 1
    assert "no active clinic" in twice.output
    as_json = runner.invoke(hub, ["clinics", "--data-dir", str(data), "--json"])
    assert '"revoked_at": null' not in as_json.output

    back = runner.invoke(
        hub,
        [
            "enrol-clinic",
            "--data-dir",
            str(data),
            "--name",
            "Clinic A",
            "--identity",
            str(identity_file),
        ],
    )
    assert back.exit_code == 2
    assert "revocation is permanent" in back.output


def test_enrol_refuses_a_private_key_file(runner: CliRunner, tmp_path: Path) -> None:
    keys_file = tmp_path / "clinic-keys.json"
    generate_keys().save(keys_file)
    result = runner.invoke(
        hub,
        [
            "enrol-clinic",
            "--data-dir",
            str(tmp_path / "hub"),
            "--name",
            "X",
            "--identity",
            str(keys_file),
        ],
    )
    assert result.exit_code == 1
    assert "identity" in result.output


def test_add_reviewer_prompts_twice_and_hashes(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "hub"
    password = "twelve chars or more"
    result = runner.invoke(
        hub,
        ["add-reviewer", "--data-dir", str(data), "Derm", "--display-name", "Dr. Derm"],
        input=f"{password}\n{password}\n",
    )
    assert result.exit_code == 0, result.output
    assert "added reviewer derm (Dr. Derm)" in result.output
    assert password not in result.output
    with HubStore(data / "hub.sqlite3") as store:
        reviewer = store.get_reviewer("derm")
    assert reviewer is not None
    assert verify_password(password, reviewer.password_hash)


def test_add_reviewer_refuses_a_short_password(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        hub,
        ["add-reviewer", "--data-dir", str(tmp_path / "hub"), "derm"],
        input="short\nshort\n",
    )
    assert result.exit_code == 2
    assert "at least 12 characters" in result.output
