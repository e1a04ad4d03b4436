"""The hub's storage: one SQLite file (WAL, ``synchronous=FULL``, mode 0600).

:class:`HubStore` is the one object callers use; each concern lives in its own module:

* :mod:`~review_hub.store.database`: the schema, opening the file, the shared plumbing;
* :mod:`~review_hub.store.clinics`: enrolled clinics;
* :mod:`~review_hub.store.cases`: cases, photos and envelope receipts, the review queue;
* :mod:`~review_hub.store.reviews`: reviews, sealed for their clinic;
* :mod:`~review_hub.store.reviewers`: reviewer accounts, sessions, login rate limits;
* :mod:`~review_hub.store.hub_keys`: the hub's own key file.

Tables
------
``clinics``
    Enrolled clinics: ``party_id`` (primary key), display ``name``, the clinic's
    ``PublicIdentity`` JSON, ``enrolled_at``, ``revoked_at`` (NULL while active).
``cases``
    One row per (clinic, case_id): a random ``key`` used in review-UI URLs, the envelope
    (``envelope_id``, ``digest``, both UNIQUE) whose payload is in effect, ``received_at``
    (first arrival, hub clock: the queue's age order), ``updated_at``, the case document
    as JSON **without photo bytes**, ``urgency_rank`` (AI action, for sorting) and
    ``reviewed_at``.
``photos``
    The decoded JPEGs, one BLOB per (case, index). Photos live in the same SQLite file as
    their case, written in the same transaction: a case is stored with all its photos or
    not at all, there are no orphan files to clean up after a crash, and the whole hub is
    backed up by copying one database (``sqlite3 hub.sqlite3 .backup``). Photos are a few
    hundred KiB each; SQLite serves BLOBs of that size efficiently.
``receipts``
    Every envelope digest ever accepted, with the case it went to: a retry or a replay of
    any earlier envelope is recognised by its digest and changes nothing.
``reviews``
    One review per case: the reviewer's fields and the review envelope already sealed for
    the clinic. The autoincrement ``id`` is the cursor of ``GET /api/v1/reviews``.
``reviewers``, ``sessions``, ``login_failures``
    Dermatologist accounts (scrypt hashes), review-UI sessions (SHA-256 of the cookie
    token, per-session CSRF token, absolute expiry) and failed logins (rate limiting).

Concurrency: the server (event-loop thread plus worker threads) and the ``skinspector
hub`` CLI (another process) share the file, hence WAL, a busy timeout, one connection per
:class:`HubStore` guarded by a lock, and ``BEGIN IMMEDIATE`` wherever a decision is read
and then written.
"""

from __future__ import annotations

from review_hub.store.cases import (
    CaseDetail,
    CaseStore,
    EnvelopeIdReused,
    IngestResult,
    PhotoInfo,
    QueueItem,
)
from review_hub.store.clinics import ClinicRecord, ClinicStore, EnrolmentConflict
from review_hub.store.hub_keys import load_or_create_hub_keys
from review_hub.store.reviewers import (
    InvalidUsername,
    ReviewerRecord,
    ReviewerStore,
    SessionRecord,
    normalise_username,
)
from review_hub.store.reviews import AlreadyReviewed, ReviewRecord, ReviewStore, StoredReview

__all__ = [
    "AlreadyReviewed",
    "CaseDetail",
    "ClinicRecord",
    "EnrolmentConflict",
    "EnvelopeIdReused",
    "HubStore",
    "IngestResult",
    "InvalidUsername",
    "PhotoInfo",
    "QueueItem",
    "ReviewRecord",
    "ReviewerRecord",
    "SessionRecord",
    "StoredReview",
    "load_or_create_hub_keys",
    "normalise_username",
]


class HubStore(ClinicStore, CaseStore, ReviewStore, ReviewerStore):
    """All hub records. Thread-safe; also safe to share with other processes (WAL).

    ``HubStore(path, clock=time.time)`` creates the file (0600) and its schema if needed;
    use it as a context manager or call :meth:`close`.
    """
