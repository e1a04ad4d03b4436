"""A small real corpus: Markdown, text and PDFs (clean, with headers, broken, encrypted)."""

from __future__ import annotations

from pathlib import Path

SCABIES_MD = """\
# Scabies

## Synonyms
- English: scabies, the itch mite. Bahasa Indonesia: kudis, gudik.

## Morphology
Intensely itchy papules and burrows in the finger webs, wrists and waist; itch is worst at
night and household contacts itch too.

## Management
Permethrin 5% cream for the patient and every household contact on the same day.
"""

TINEA_MD = """\
# Tinea versicolor

## Synonyms
Pityriasis versicolor; Bahasa Indonesia: panu.

## Morphology
Fine scaly hypopigmented or hyperpigmented macules on the upper trunk and back, with a fine
scale when scraped.
"""

NOTES_TXT = """Notes on photography.

Take the photo in daylight, with a ruler next to the lesion.

Keep the camera parallel to the skin."""


def write_pdf(
    path: Path, pages: list[str], *, header: str | None = None, encrypt: bool = False
) -> None:
    import pymupdf

    document = pymupdf.open()
    for number, body in enumerate(pages, start=1):
        page = document.new_page()
        y = 40
        if header:
            page.insert_text((50, y), header, fontsize=9)
        y = 80
        for line in body.split("\n"):
            page.insert_text((50, y), line, fontsize=11)
            y += 14
        page.insert_text((280, 800), f"Page {number}", fontsize=9)
    if encrypt:
        document.save(
            path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner"
        )
    else:
        document.save(path)
    document.close()


def make_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "scabies.md").write_text(SCABIES_MD)
    (root / "tinea-versicolor.md").write_text(TINEA_MD)
    (root / "notes.txt").write_text(NOTES_TXT)
    write_pdf(
        root / "impetigo.pdf",
        [
            "Impetigo is a superficial bacterial infec-\ntion of the skin with honey-coloured\n"
            "crusts around the nose and mouth.",
            "Treat limited impetigo with topical antibiotics\nand keep the crusts clean.",
            "Refer if there is fever or spreading cellu-\nlitis.",
        ],
        header="Clinic Handbook of Skin Disease",
    )
    write_pdf(root / "locked.pdf", ["confidential"], encrypt=True)
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj garbage without end")
    (root / "empty.md").write_text("   \n\n")
    return root


# An entry written in Bahasa Indonesia (affixed forms), beside two English ones.
KURAP_ID_MD = """\
# Kurap

## Gambaran
Bercak kemerahan bersisik berbentuk cincin yang terasa gatal, pinggirnya meninggi dan
bagian tengahnya tampak lebih bersih. Sering tumbuh di badan dan lipatan paha.

## Pengobatan
Oleskan krim antijamur dua kali sehari selama dua minggu.
"""

WART_EN_MD = """\
# Viral wart

## Morphology
Rough raised papule on the fingers or sole, with black dots; it interrupts the skin lines.
"""

BURN_EN_MD = """\
# Minor burn

## Management
Cool the burn under running water for twenty minutes; cover it with a clean dressing.
"""


def make_bilingual_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "kurap.md").write_text(KURAP_ID_MD)
    (root / "viral-wart.md").write_text(WART_EN_MD)
    (root / "minor-burn.md").write_text(BURN_EN_MD)
    return root
