// The string table: every visible text in Bahasa Indonesia (default) and English.

export const LANGS = ['id', 'en'];
const KEY = 'sk.lang';

export const STRINGS = {
  id: {
    doc_title: 'SKINspectoR – bantuan keputusan kulit',
    lang_switch: 'English',
    lang_switch_aria: 'Ganti bahasa ke English',
    nav_aria: 'Menu utama',
    nav_new: 'Kasus baru',
    nav_cases: 'Daftar kasus',
    demo_translation:
      'MODE DEMO: belum ada paket model yang terpasang, jadi kotak ini menjalankan model demo ' +
      'bawaan. Bobotnya acak: hasilnya teks acak dan tidak boleh dipakai untuk pasien.',
    conn_offline:
      'Kotak SKINspectoR tidak dapat dihubungi. Semua isian tetap tersimpan di ponsel ini.',
    footer_disclaimer:
      'Hanya alat bantu keputusan, bukan diagnosis. Keputusan klinis tetap pada tenaga kesehatan.',
    device_line: 'Ponsel ini: {name}',
    bundle_line: 'Paket model: {bundle}',
    intended_use_line: 'Penggunaan yang dimaksud: {text}',
    loading: 'Memuat…',
    storage_error: 'Penyimpanan ponsel tidak tersedia: isian tidak dapat disimpan.',
    noscript: 'Aplikasi ini memerlukan JavaScript.',

    pair_title: 'Pasangkan ponsel ini',
    pair_intro:
      'Di kotak SKINspectoR, buka halaman pemasangan. Pindai kode QR dengan kamera ponsel, ' +
      'atau ketik kode 8 angka di bawah. Cukup sekali saja.',
    pair_code: 'Kode pemasangan (8 angka)',
    pair_name: 'Nama ponsel ini (terlihat di kotak)',
    pair_submit: 'Pasangkan',
    pair_busy: 'Memasangkan…',
    pair_revoked:
      'Ponsel ini telah dilepas dari kotak (kuncinya dicabut). Pasangkan lagi dengan kode baru.',
    pair_err_invalid: 'Kode salah atau sudah dipakai. Minta kode baru di kotak.',
    pair_err_expired: 'Kode sudah kedaluwarsa. Minta kode baru di kotak.',
    pair_err_rate: 'Terlalu banyak percobaan. Coba lagi dalam {s} detik.',
    pair_err_format: 'Ketik kode yang terdiri dari 8 angka.',
    pair_err_name: 'Isi nama ponsel ini.',
    pair_err_network: 'Kotak tidak dapat dihubungi. Pastikan ponsel tersambung ke Wi-Fi klinik.',
    pair_err_other: 'Pemasangan gagal: {msg}',
    default_device_name: 'Ponsel',

    new_title: 'Kasus baru',
    photos_title: 'Foto (1–3)',
    photos_hint:
      'Foto dekat dan tajam, cahaya terang. Satu foto dari dekat, satu dari agak jauh.',
    take_photo: 'Ambil foto',
    pick_gallery: 'Pilih dari galeri',
    photo_n: 'Foto {n}',
    retake: 'Ulangi',
    remove: 'Hapus',
    retake_input: 'Ulangi foto dengan kamera',
    photo_preparing: 'Menyiapkan foto…',
    photo_max: 'Paling banyak 3 foto.',
    photo_failed: 'Foto ini tidak dapat dibaca. Coba foto lain.',
    photo_too_small_local: 'Foto terlalu kecil. Ambil lagi dengan kamera ponsel dari dekat.',
    photo_box_issue: 'Kotak menolak foto ini:',
    age: 'Umur (tahun)',
    sex: 'Jenis kelamin',
    sex_female: 'Perempuan',
    sex_male: 'Laki-laki',
    sex_other: 'Lainnya',
    sex_unknown: 'Tidak diketahui',
    body_site: 'Lokasi di tubuh',
    site_choose: '— pilih —',
    site_face: 'Wajah',
    site_scalp: 'Kulit kepala',
    site_eye: 'Sekitar mata',
    site_mouth: 'Mulut atau bibir',
    site_neck: 'Leher',
    site_chest: 'Dada',
    site_abdomen: 'Perut',
    site_back: 'Punggung',
    site_arm: 'Lengan',
    site_hand: 'Tangan',
    site_groin: 'Lipat paha atau kelamin',
    site_buttocks: 'Bokong',
    site_leg: 'Tungkai (paha, betis)',
    site_foot: 'Kaki (telapak, punggung kaki)',
    site_nails: 'Kuku',
    site_widespread: 'Seluruh tubuh / banyak tempat',
    site_other: 'Lainnya',
    site_other_label: 'Lokasi lain',
    duration: 'Sudah berapa lama?',
    duration_unit: 'Satuan waktu',
    unit_days: 'hari',
    unit_weeks: 'minggu',
    unit_months: 'bulan',
    unit_years: 'tahun',
    symptoms: 'Keluhan',
    sym_itch: 'Gatal',
    sym_pain: 'Nyeri',
    sym_fever: 'Demam',
    sym_bleeding: 'Berdarah',
    sym_growth: 'Membesar',
    notes: 'Catatan (riwayat, perubahan, obat)',
    notes_ph: 'mis. tahi lalat berubah warna dan berdarah',
    draft_saved: 'Draf tersimpan di ponsel ini.',
    send: 'Kirim untuk dianalisis',
    sending: 'Mengirim…',
    clear_draft: 'Kosongkan formulir',
    clear_confirm: 'Hapus semua foto dan isian formulir ini?',
    err_need_photo: 'Tambahkan minimal satu foto.',
    err_age: 'Umur harus antara 0 dan 120 tahun.',
    err_duration: 'Lama keluhan harus angka 1–999.',
    err_rejected: 'Kotak menolak kasus ini: {msg}',
    saved_offline:
      'Kotak tidak dapat dihubungi. Kasus disimpan di ponsel dan akan dikirim otomatis ' +
      'begitu kotak tersambung lagi.',
    sent_ok: 'Kasus terkirim ke kotak.',
    replace_draft_confirm: 'Formulir kasus baru sudah berisi. Ganti isiannya?',

    cases_title: 'Daftar kasus',
    refresh: 'Muat ulang',
    load_more: 'Tampilkan lebih banyak',
    no_cases: 'Belum ada kasus di kotak.',
    on_phone_title: 'Di ponsel ini, belum terkirim',
    on_box_title: 'Di kotak',
    st_waiting_send: 'Menunggu dikirim',
    st_sending: 'Sedang dikirim',
    st_not_accepted: 'Ditolak kotak',
    st_queued: 'Menunggu analisis',
    st_analysing: 'Sedang dianalisis',
    st_done: 'Selesai',
    st_rejected: 'Foto perlu diulang',
    st_failed: 'Analisis gagal',
    st_sent: 'Dikirim ke dokter kulit',
    st_reviewed: 'Sudah ditinjau dokter kulit',
    send_now: 'Kirim sekarang',
    delete: 'Hapus',
    edit: 'Ubah',
    delete_confirm: 'Hapus kasus ini dari ponsel? Foto dan isiannya akan hilang.',
    attempts: 'Percobaan: {n}',
    photos_count: '{n} foto',
    age_short: '{n} th',
    no_details: 'Tanpa keterangan',
    list_error: 'Daftar tidak dapat dimuat: {msg}',

    back_to_list: '← Daftar kasus',
    case_title: 'Kasus',
    phase_findings: 'Melihat foto',
    phase_retrieval: 'Mencari di pustaka rujukan',
    phase_report: 'Menulis penilaian',
    phases_aria: 'Tahap analisis',
    live_findings: 'Temuan (sedang ditulis)',
    live_report: 'Penilaian (sedang ditulis)',
    waiting_queue: 'Menunggu giliran di kotak…',
    reconnecting: 'Sambungan terputus, menyambung lagi…',
    action_urgent: 'RUJUK SEGERA',
    action_urgent_help: 'Rujuk pasien ke dokter atau rumah sakit hari ini.',
    action_routine: 'Rujuk (tidak darurat)',
    action_routine_help: 'Rujuk ke dokter melalui jalur biasa.',
    action_selfcare: 'Perawatan mandiri',
    action_selfcare_help: 'Beri nasihat perawatan; rujuk bila memburuk.',
    action_default_note: 'Model tidak menyatakan tindakan yang jelas; dipakai pilihan aman.',
    red_flags: 'Tanda bahaya',
    likely: 'Kemungkinan kondisi',
    findings: 'Temuan',
    references: 'Rujukan',
    ref_cited: 'dikutip',
    ref_source: 'Sumber',
    ref_section: 'Bagian',
    ref_page: 'Halaman',
    no_refs: 'Tidak ada rujukan.',
    raw_text: 'Teks lengkap dari model',
    incomplete: 'Jawaban model tidak lengkap.',
    context: 'Data pasien',
    tech: 'Detail teknis',
    photos: 'Foto',
    photo_unavailable: 'Foto hanya dapat dilihat di ponsel pengirim.',
    rejected_title: 'Foto tidak dapat dipakai',
    rejected_help:
      'Ambil ulang foto sesuai saran di samping setiap foto, lalu kirim lagi.',
    retake_case: 'Ulangi foto dan kirim lagi',
    failed_title: 'Analisis gagal',
    failed_help: 'Kirim kasus ini lagi nanti atau hubungi petugas kotak.',
    review_title: 'Tinjauan dokter kulit',
    review_by: 'Peninjau',
    review_diagnosis: 'Diagnosis',
    review_action: 'Tindakan',
    review_management: 'Penatalaksanaan',
    review_comments: 'Pesan',
    review_at: 'Waktu tinjauan',
    sync_sent_note: 'Kasus ini sudah dikirim ke dokter kulit untuk ditinjau.',
    not_found: 'Kasus tidak ditemukan.',
    load_error: 'Tidak dapat memuat: {msg}',
    ctx_age: 'Umur',
    ctx_sex: 'Jenis kelamin',
    ctx_site: 'Lokasi',
    ctx_duration: 'Lama',
    ctx_symptoms: 'Keluhan',
    ctx_notes: 'Catatan',
    created: 'Dibuat',
  },
  en: {
    doc_title: 'SKINspectoR – skin decision support',
    lang_switch: 'Bahasa Indonesia',
    lang_switch_aria: 'Switch language to Bahasa Indonesia',
    nav_aria: 'Main menu',
    nav_new: 'New case',
    nav_cases: 'Cases',
    demo_translation:
      'DEMO MODE: no model bundle is installed, so this box runs the built-in demo model. ' +
      'It has random weights: its output is random text and must not be used for patients.',
    conn_offline:
      'The SKINspectoR box cannot be reached. Everything you entered stays saved on this phone.',
    footer_disclaimer:
      'Decision support only, not a diagnosis. The clinical decision stays with the health worker.',
    device_line: 'This phone: {name}',
    bundle_line: 'Model bundle: {bundle}',
    intended_use_line: 'Intended use: {text}',
    loading: 'Loading…',
    storage_error: 'Phone storage is not available: your entries cannot be saved.',
    noscript: 'This app needs JavaScript.',

    pair_title: 'Pair this phone',
    pair_intro:
      'On the SKINspectoR box, open the pairing page. Scan its QR code with the phone camera, ' +
      'or type the 8-digit code below. You only do this once.',
    pair_code: 'Pairing code (8 digits)',
    pair_name: 'Name of this phone (shown on the box)',
    pair_submit: 'Pair',
    pair_busy: 'Pairing…',
    pair_revoked:
      'This phone was unpaired from the box (its key was revoked). Pair again with a new code.',
    pair_err_invalid: 'Wrong or already used code. Get a new code on the box.',
    pair_err_expired: 'The code has expired. Get a new code on the box.',
    pair_err_rate: 'Too many attempts. Try again in {s} seconds.',
    pair_err_format: 'Type the 8-digit code.',
    pair_err_name: 'Enter a name for this phone.',
    pair_err_network: 'The box cannot be reached. Check that the phone is on the clinic Wi-Fi.',
    pair_err_other: 'Pairing failed: {msg}',
    default_device_name: 'Phone',

    new_title: 'New case',
    photos_title: 'Photos (1–3)',
    photos_hint: 'Close, sharp photos in good light. One close-up, one from a little further away.',
    take_photo: 'Take photo',
    pick_gallery: 'Choose from gallery',
    photo_n: 'Photo {n}',
    retake: 'Retake',
    remove: 'Remove',
    retake_input: 'Retake the photo with the camera',
    photo_preparing: 'Preparing photo…',
    photo_max: 'At most 3 photos.',
    photo_failed: 'This photo cannot be read. Try another one.',
    photo_too_small_local: 'The photo is too small. Take it again with the phone camera, closer.',
    photo_box_issue: 'The box refused this photo:',
    age: 'Age (years)',
    sex: 'Sex',
    sex_female: 'Female',
    sex_male: 'Male',
    sex_other: 'Other',
    sex_unknown: 'Unknown',
    body_site: 'Body site',
    site_choose: '— choose —',
    site_face: 'Face',
    site_scalp: 'Scalp',
    site_eye: 'Around the eye',
    site_mouth: 'Mouth or lips',
    site_neck: 'Neck',
    site_chest: 'Chest',
    site_abdomen: 'Abdomen',
    site_back: 'Back',
    site_arm: 'Arm',
    site_hand: 'Hand',
    site_groin: 'Groin or genitals',
    site_buttocks: 'Buttocks',
    site_leg: 'Leg (thigh, calf)',
    site_foot: 'Foot',
    site_nails: 'Nails',
    site_widespread: 'Whole body / many places',
    site_other: 'Other',
    site_other_label: 'Other site',
    duration: 'How long has it been there?',
    duration_unit: 'Unit of time',
    unit_days: 'days',
    unit_weeks: 'weeks',
    unit_months: 'months',
    unit_years: 'years',
    symptoms: 'Symptoms',
    sym_itch: 'Itch',
    sym_pain: 'Pain',
    sym_fever: 'Fever',
    sym_bleeding: 'Bleeding',
    sym_growth: 'Growing',
    notes: 'Notes (history, changes, medicines)',
    notes_ph: 'e.g. mole changing colour and bleeding',
    draft_saved: 'Draft saved on this phone.',
    send: 'Send for analysis',
    sending: 'Sending…',
    clear_draft: 'Clear the form',
    clear_confirm: 'Delete all photos and entries of this form?',
    err_need_photo: 'Add at least one photo.',
    err_age: 'Age must be between 0 and 120 years.',
    err_duration: 'The duration must be a number from 1 to 999.',
    err_rejected: 'The box did not accept this case: {msg}',
    saved_offline:
      'The box cannot be reached. The case is saved on this phone and will be sent ' +
      'automatically as soon as the box is back.',
    sent_ok: 'Case sent to the box.',
    replace_draft_confirm: 'The new-case form already has entries. Replace them?',

    cases_title: 'Cases',
    refresh: 'Refresh',
    load_more: 'Show more',
    no_cases: 'No cases on the box yet.',
    on_phone_title: 'On this phone, not sent yet',
    on_box_title: 'On the box',
    st_waiting_send: 'Waiting to send',
    st_sending: 'Sending',
    st_not_accepted: 'Not accepted by the box',
    st_queued: 'Waiting for analysis',
    st_analysing: 'Analysing',
    st_done: 'Done',
    st_rejected: 'Photo needs retake',
    st_failed: 'Analysis failed',
    st_sent: 'Sent to dermatologist',
    st_reviewed: 'Reviewed by dermatologist',
    send_now: 'Send now',
    delete: 'Delete',
    edit: 'Edit',
    delete_confirm: 'Delete this case from the phone? Its photos and entries will be lost.',
    attempts: 'Attempts: {n}',
    photos_count: '{n} photo(s)',
    age_short: '{n} y',
    no_details: 'No details',
    list_error: 'The list could not be loaded: {msg}',

    back_to_list: '← Cases',
    case_title: 'Case',
    phase_findings: 'Looking at the photos',
    phase_retrieval: 'Searching the reference library',
    phase_report: 'Writing the assessment',
    phases_aria: 'Analysis steps',
    live_findings: 'Findings (being written)',
    live_report: 'Assessment (being written)',
    waiting_queue: 'Waiting in line at the box…',
    reconnecting: 'Connection lost, reconnecting…',
    action_urgent: 'URGENT REFERRAL',
    action_urgent_help: 'Send the patient to a doctor or hospital today.',
    action_routine: 'Routine referral',
    action_routine_help: 'Refer to a doctor through the usual route.',
    action_selfcare: 'Self-care',
    action_selfcare_help: 'Give care advice; refer if it gets worse.',
    action_default_note: 'The model stated no clear action; the safe default was used.',
    red_flags: 'Red flags',
    likely: 'Likely conditions',
    findings: 'Findings',
    references: 'References',
    ref_cited: 'cited',
    ref_source: 'Source',
    ref_section: 'Section',
    ref_page: 'Page',
    no_refs: 'No references.',
    raw_text: 'Full model text',
    incomplete: "The model's answer was incomplete.",
    context: 'Patient details',
    tech: 'Technical details',
    photos: 'Photos',
    photo_unavailable: 'The photo can only be seen on the phone that sent it.',
    rejected_title: 'The photos cannot be used',
    rejected_help: 'Retake the photos following the advice next to each photo, then send again.',
    retake_case: 'Retake photos and send again',
    failed_title: 'The analysis failed',
    failed_help: 'Send this case again later or contact the box operator.',
    review_title: "Dermatologist's review",
    review_by: 'Reviewer',
    review_diagnosis: 'Diagnosis',
    review_action: 'Action',
    review_management: 'Management',
    review_comments: 'Message',
    review_at: 'Reviewed',
    sync_sent_note: 'This case was sent to a dermatologist for review.',
    not_found: 'Case not found.',
    load_error: 'Could not load: {msg}',
    ctx_age: 'Age',
    ctx_sex: 'Sex',
    ctx_site: 'Site',
    ctx_duration: 'Duration',
    ctx_symptoms: 'Symptoms',
    ctx_notes: 'Notes',
    created: 'Created',
  },
};

export const SITES = [
  'face', 'scalp', 'eye', 'mouth', 'neck', 'chest', 'abdomen', 'back', 'arm', 'hand',
  'groin', 'buttocks', 'leg', 'foot', 'nails', 'widespread', 'other',
];
export const SYMPTOMS = ['itch', 'pain', 'fever', 'bleeding', 'growth'];
export const UNITS = ['days', 'weeks', 'months', 'years'];

function stored() {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

let lang = LANGS.includes(stored()) ? stored() : 'id';
const listeners = new Set();

export const getLang = () => lang;

export function t(key, vars) {
  let text = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  if (vars) text = text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ''));
  return text;
}

/** Fill every element marked with data-i18n (text), data-i18n-ph (placeholder) or
 * data-i18n-aria (aria-label) below root. */
export function applyI18n(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-ph]')) el.placeholder = t(el.dataset.i18nPh);
  for (const el of root.querySelectorAll('[data-i18n-aria]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nAria));
  }
}

export function setLang(next) {
  lang = LANGS.includes(next) ? next : 'id';
  try {
    localStorage.setItem(KEY, lang);
  } catch {
    // private mode: the choice lasts for this visit only
  }
  document.documentElement.lang = lang;
  document.title = t('doc_title');
  applyI18n();
  for (const listener of listeners) listener(lang);
}

export const onLangChange = (listener) => listeners.add(listener);

/** A server time (seconds since the epoch, milliseconds or an ISO string) for people. */
export function formatTime(value) {
  let ms = typeof value === 'number' ? value : Date.parse(value);
  if (!Number.isFinite(ms)) return String(value ?? '');
  if (ms < 1e12) ms *= 1000;
  return new Intl.DateTimeFormat(lang === 'id' ? 'id-ID' : 'en-GB', {
    dateStyle: 'medium',
    timeStyle: 'short',
  }).format(new Date(ms));
}
