"""Enrolled clinics (table ``clinics``): enrolment, revocation, look-up."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from review_hub.store.database import StoreBase, clean_name
from skinspector.core.errors import InputError
from sync_agent.keys import PublicIdentity

__all__ = ["ClinicRecord", "ClinicStore", "EnrolmentConflict"]


class EnrolmentConflict(InputError):
    """The clinic cannot be (re-)enrolled as asked."""


@dataclass(frozen=True, slots=True)
class ClinicRecord:
    party_id: str
    name: str
    identity_json: str
    enrolled_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def identity(self) -> PublicIdentity:
        return PublicIdentity.from_json(self.identity_json)


def _clinic_row(row: sqlite3.Row) -> ClinicRecord:
    return ClinicRecord(
        row["party_id"],
        row["name"],
        row["identity_json"],
        row["enrolled_at"],
        row["revoked_at"],
    )


class ClinicStore(StoreBase):
    """The clinic records of :class:`~review_hub.store.HubStore`."""

    def enrol_clinic(self, identity: PublicIdentity, name: str) -> tuple[ClinicRecord, bool]:
        """Register a clinic; returns (record, created).

        Enrolling the same identity again renames it (idempotent). A revoked party id
        cannot come back (revocation is for lost or compromised keys: the clinic makes
        new keys, hence a new party id), and a party id cannot change its KEM key here.
        """
        name = clean_name(name, "clinic name")
        identity_json = identity.to_json()
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM clinics WHERE party_id = ?", (identity.party_id,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO clinics (party_id, name, identity_json, enrolled_at) "
                    "VALUES (?, ?, ?, ?)",
                    (identity.party_id, name, identity_json, now),
                )
                created = True
            else:
                if row["revoked_at"] is not None:
                    raise EnrolmentConflict(
                        f"clinic {identity.party_id} was revoked; revocation is permanent: "
                        "the clinic must generate new keys and enrol again"
                    )
                if PublicIdentity.from_json(row["identity_json"]) != identity:
                    raise EnrolmentConflict(
                        f"clinic {identity.party_id} is enrolled with another KEM key"
                    )
                db.execute(
                    "UPDATE clinics SET name = ? WHERE party_id = ?", (name, identity.party_id)
                )
                created = False
            record = _clinic_row(
                db.execute(
                    "SELECT * FROM clinics WHERE party_id = ?", (identity.party_id,)
                ).fetchone()
            )
        return record, created

    def revoke_clinic(self, party_id: str) -> bool:
        """Revoke an active clinic at once; False when no active clinic has that id."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE clinics SET revoked_at = ? WHERE party_id = ? AND revoked_at IS NULL",
                (self._clock(), party_id),
            )
            return cursor.rowcount == 1

    def get_clinic(self, party_id: str) -> ClinicRecord | None:
        rows = self._read("SELECT * FROM clinics WHERE party_id = ?", (party_id,))
        return _clinic_row(rows[0]) if rows else None

    def active_identity(self, party_id: str) -> PublicIdentity | None:
        """The enrolled identity of an active clinic, else None."""
        clinic = self.get_clinic(party_id)
        return clinic.identity() if clinic is not None and clinic.active else None

    def list_clinics(self) -> list[ClinicRecord]:
        rows = self._read("SELECT * FROM clinics ORDER BY enrolled_at, party_id")
        return [_clinic_row(row) for row in rows]

    # ------------------------------------------------------------------ quotas

    def clinic_usage(self, party_id: str, *, hour_from: float, day_from: float) -> tuple[int, int]:
        """(new cases received since ``hour_from``, bytes uploaded since ``day_from``)
        from the clinic: what its quotas are measured against (re-sends and updates of a
        known case do not count as new cases)."""
        cases = self._read(
            "SELECT COUNT(*) FROM cases WHERE clinic_id = ? AND received_at > ?",
            (party_id, hour_from),
        )
        uploaded = self._read(
            "SELECT COALESCE(SUM(bytes), 0) FROM upload_usage WHERE clinic_id = ? AND at > ?",
            (party_id, day_from),
        )
        return int(cases[0][0]), int(uploaded[0][0])

    def record_upload(self, party_id: str, size: int, *, forget_before: float) -> None:
        """Count ``size`` uploaded bytes against the clinic (records older than
        ``forget_before`` are dropped)."""
        now = self._clock()
        with self._write() as db:
            db.execute("DELETE FROM upload_usage WHERE at <= ?", (forget_before,))
            db.execute(
                "INSERT INTO upload_usage (clinic_id, at, bytes) VALUES (?, ?, ?)",
                (party_id, now, size),
            )
