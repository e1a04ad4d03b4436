"""The doctor's words, in Bahasa Indonesia (the default) and English.

Each entry is (message, action); ``{name}`` fields are filled by the check. Messages never
contain patient data: only counts, sizes, ages, versions, addresses and error kinds.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["LANGS", "Lang", "text"]

Lang = Literal["id", "en"]
LANGS: tuple[Lang, ...] = ("id", "en")

_T = dict[str, tuple[str, str]]

_ID: _T = {
    "bundle.ok": ("Model {version} terpasang dan semua berkasnya utuh.", ""),
    "bundle.none": (
        "Belum ada model yang terpasang.",
        "Hubungi tim teknis: pasang paket model dengan 'skinspector update'.",
    ),
    "bundle.bad": (
        "Berkas model {version} rusak atau berubah: {reason}",
        "Pasang ulang paket model dengan 'skinspector update', atau jalankan "
        "'skinspector update --rollback' untuk kembali ke model sebelumnya.",
    ),
    "bundle.unsigned": (
        "Model {version} tidak punya daftar berkas (bukan paket bertanda tangan).",
        "Pasang paket model resmi dengan 'skinspector update'.",
    ),
    "disk.ok": ("Ruang disk kosong {free}; cukup untuk sekitar {days} hari foto.", ""),
    "disk.ok_idle": ("Ruang disk kosong {free}; belum ada kasus baru akhir-akhir ini.", ""),
    "disk.low": (
        "Ruang disk kosong tinggal {free}; cukup untuk sekitar {days} hari foto.",
        "Buat cadangan ('skinspector box backup') lalu minta tim teknis menambah ruang disk.",
    ),
    "disk.full": (
        "Ruang disk hampir penuh: tinggal {free} (sekitar {days} hari).",
        "Segera hubungi tim teknis. Kasus baru bisa gagal disimpan.",
    ),
    "clock.ok": ("Jam komputer wajar ({now}).", ""),
    "clock.behind": (
        "Jam komputer mundur: {now}, padahal data terbaru di kotak ini bertanggal {newest}.",
        "Atur tanggal dan jam komputer dengan benar, lalu jalankan pemeriksaan ini lagi.",
    ),
    "network.ok": ("Alamat jaringan: {addresses}. Alamat untuk pasangkan ponsel: {url}", ""),
    "network.none": (
        "Kotak ini tidak terhubung ke jaringan lokal (hanya {url}).",
        "Periksa kabel jaringan atau Wi-Fi, lalu nyalakan ulang router bila perlu.",
    ),
    "server.ok": ("Server berjalan dan menjawab di {url}.", ""),
    "server.down": (
        "Server tidak menjawab di {url} ({reason}).",
        "Nyalakan ulang kotak, atau jalankan 'sudo systemctl restart skinspector'.",
    ),
    "tls.off": ("HTTPS tidak dipakai (tidak dikonfigurasi).", ""),
    "tls.ok": ("Sertifikat HTTPS berlaku sampai {until}.", ""),
    "tls.soon": (
        "Sertifikat HTTPS akan habis pada {until} ({days} hari lagi).",
        "Minta tim teknis memperbarui sertifikat sebelum tanggal itu.",
    ),
    "tls.bad": (
        "Sertifikat HTTPS tidak berlaku: {reason}",
        "Minta tim teknis memasang sertifikat baru; ponsel tidak bisa terhubung.",
    ),
    "hub.off": ("Pusat peninjauan (hub) belum dikonfigurasi.", ""),
    "hub.ok": ("Pusat peninjauan {host} dapat dihubungi.", ""),
    "hub.down": (
        "Pusat peninjauan {host} tidak dapat dihubungi ({reason}).",
        "Periksa sambungan internet. Kasus tetap tersimpan dan akan dikirim nanti.",
    ),
    "outbox.ok": ("Antrean kirim kosong: semua kasus sudah terkirim.", ""),
    "outbox.waiting": (
        "{count} kasus menunggu dikirim ({size}); yang tertua {age}.",
        "",
    ),
    "outbox.stuck": (
        "{count} kasus menunggu dikirim ({size}); yang tertua sudah {age}.",
        "Periksa sambungan internet ke pusat peninjauan; hubungi tim teknis bila berlanjut.",
    ),
    "errors.ok": ("Tidak ada analisis yang gagal dalam {days} hari terakhir.", ""),
    "errors.some": (
        "{count} analisis gagal dalam {days} hari terakhir. Terakhir: {last}",
        "Foto ulang kasus tersebut. Bila terus gagal, hubungi tim teknis.",
    ),
    "store.unreadable": (
        "Basis data kasus tidak bisa dibaca: {reason}",
        "Jangan hapus apa pun. Hubungi tim teknis dan siapkan cadangan terakhir.",
    ),
    "summary.ok": ("Semua pemeriksaan baik.", ""),
    "summary.warn": ("Ada {count} hal yang perlu diperhatikan.", ""),
    "summary.fail": ("Ada {count} masalah yang harus segera ditangani.", ""),
    "age.days": ("{n} hari", ""),
    "age.hours": ("{n} jam", ""),
    "age.minutes": ("{n} menit", ""),
}

_EN: _T = {
    "bundle.ok": ("Model {version} is installed and all its files are intact.", ""),
    "bundle.none": (
        "No model is installed.",
        "Call the technical team: install a model bundle with 'skinspector update'.",
    ),
    "bundle.bad": (
        "The files of model {version} are damaged or changed: {reason}",
        "Reinstall the model bundle with 'skinspector update', or run "
        "'skinspector update --rollback' to go back to the previous model.",
    ),
    "bundle.unsigned": (
        "Model {version} lists no files (not a signed bundle).",
        "Install an official model bundle with 'skinspector update'.",
    ),
    "disk.ok": ("{free} of disk free; enough for about {days} days of photos.", ""),
    "disk.ok_idle": ("{free} of disk free; no new cases recently.", ""),
    "disk.low": (
        "Only {free} of disk free; enough for about {days} days of photos.",
        "Make a backup ('skinspector box backup') and ask the technical team for more disk.",
    ),
    "disk.full": (
        "The disk is nearly full: {free} left (about {days} days).",
        "Call the technical team now. New cases may fail to save.",
    ),
    "clock.ok": ("The clock looks right ({now}).", ""),
    "clock.behind": (
        "The clock is behind: {now}, but the newest data on this box is from {newest}.",
        "Set the computer's date and time correctly, then run this check again.",
    ),
    "network.ok": ("Network addresses: {addresses}. Pairing address for phones: {url}", ""),
    "network.none": (
        "This box is not on the local network (only {url}).",
        "Check the network cable or Wi-Fi; restart the router if needed.",
    ),
    "server.ok": ("The server is running and answers at {url}.", ""),
    "server.down": (
        "The server does not answer at {url} ({reason}).",
        "Restart the box, or run 'sudo systemctl restart skinspector'.",
    ),
    "tls.off": ("HTTPS is not used (not configured).", ""),
    "tls.ok": ("The HTTPS certificate is valid until {until}.", ""),
    "tls.soon": (
        "The HTTPS certificate expires on {until} ({days} days from now).",
        "Ask the technical team to renew the certificate before then.",
    ),
    "tls.bad": (
        "The HTTPS certificate is not valid: {reason}",
        "Ask the technical team to install a new certificate; phones cannot connect.",
    ),
    "hub.off": ("The review hub is not configured.", ""),
    "hub.ok": ("The review hub {host} is reachable.", ""),
    "hub.down": (
        "The review hub {host} cannot be reached ({reason}).",
        "Check the internet connection. Cases stay stored and are sent later.",
    ),
    "outbox.ok": ("The send queue is empty: every case has been sent.", ""),
    "outbox.waiting": ("{count} cases waiting to be sent ({size}); the oldest {age}.", ""),
    "outbox.stuck": (
        "{count} cases waiting to be sent ({size}); the oldest has waited {age}.",
        "Check the internet connection to the review hub; call the technical team if it goes on.",
    ),
    "errors.ok": ("No failed analyses in the last {days} days.", ""),
    "errors.some": (
        "{count} analyses failed in the last {days} days. Last: {last}",
        "Take the photos again. If it keeps failing, call the technical team.",
    ),
    "store.unreadable": (
        "The case database cannot be read: {reason}",
        "Delete nothing. Call the technical team and have the last backup ready.",
    ),
    "summary.ok": ("All checks passed.", ""),
    "summary.warn": ("{count} things need attention.", ""),
    "summary.fail": ("{count} problems must be fixed now.", ""),
    "age.days": ("{n} days", ""),
    "age.hours": ("{n} hours", ""),
    "age.minutes": ("{n} minutes", ""),
}

_TABLES: dict[Lang, _T] = {"id": _ID, "en": _EN}


def text(lang: Lang, key: str, **fields: object) -> tuple[str, str]:
    """(message, action) for ``key`` in ``lang``, with ``fields`` filled in."""
    message, action = _TABLES[lang][key]
    return message.format(**fields), action.format(**fields)
