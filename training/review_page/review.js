// Checkpoint review page: one row per evaluation image, one cell per checkpoint.
// Served by `skinspector review-checkpoints` (marks POSTed to the server) or inlined into a
// self-contained HTML file (marks kept in this browser's localStorage and exported as JSON).
// Model output is untrusted text: it is only ever set with textContent.
(function () {
  'use strict';

  const data = JSON.parse(document.getElementById('review-data').textContent);
  const LABELS = data.labels; // [[key, title], ...]
  const STORE_KEY = 'skinspector-review:' + data.run;
  const marks = new Map(); // checkpoint \0 id \0 reviewer -> latest mark
  const itemIds = new Set(data.items.map((item) => item.id));

  function keyOf(checkpoint, id, reviewer) {
    return checkpoint + '\u0000' + id + '\u0000' + reviewer;
  }

  function remember(mark) {
    const key = keyOf(mark.checkpoint, mark.id, mark.reviewer);
    const held = marks.get(key);
    if (!held || mark.time >= held.time) marks.set(key, mark);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  data.marks.forEach(remember);
  if (data.mode === 'static') {
    try {
      JSON.parse(localStorage.getItem(STORE_KEY) || '[]').forEach(remember);
    } catch (error) {
      console.warn('stored marks unreadable', error);
    }
  }

  const reviewerInput = document.getElementById('reviewer');
  reviewerInput.value = localStorage.getItem('skinspector-reviewer') || '';
  const reviewer = () => reviewerInput.value.trim();

  document.getElementById('mode-note').textContent = data.mode === 'server'
    ? 'Marks are saved to ' + data.marks_path + ' as you make them.'
    : 'Self-contained page: marks stay in this browser until you export them, then run '
      + '`skinspector review-checkpoints RUN_DIR --import-marks FILE`.';

  // ------------------------------------------------------------------ summary
  function renderSummary() {
    const table = document.getElementById('summary');
    const head = el('tr');
    ['checkpoint', 'step', 'reviewed'].concat(LABELS.map((l) => l[1]))
      .forEach((title) => head.appendChild(el('th', {}, title)));
    table.tHead.replaceChildren(head);
    const rows = data.checkpoints.map((checkpoint) => {
      const latest = Array.from(marks.values()).filter(
        (m) => m.checkpoint === checkpoint.name && m.labels.length > 0 && itemIds.has(m.id));
      const row = el('tr', {'data-checkpoint': checkpoint.name});
      row.appendChild(el('td', {}, checkpoint.name));
      row.appendChild(el('td', {}, String(checkpoint.step)));
      row.appendChild(el('td', {'data-label': 'reviewed'},
        latest.length + ' / ' + data.items.length));
      for (const [label] of LABELS) {
        const count = latest.filter((m) => m.labels.includes(label)).length;
        const rate = latest.length ? Math.round((100 * count) / latest.length) : 0;
        row.appendChild(el('td', {'data-label': label}, count + ' (' + rate + '%)'));
      }
      return row;
    });
    table.tBodies[0].replaceChildren(...rows);
  }

  // -------------------------------------------------------------------- cells
  const cells = [];

  function showMark(cell) {
    const mark = marks.get(keyOf(cell.dataset.checkpoint, cell.dataset.id, reviewer()));
    for (const box of cell.querySelectorAll('input[type=checkbox]')) {
      box.checked = Boolean(mark && mark.labels.includes(box.value));
    }
    cell.querySelector('textarea').value = mark ? mark.note : '';
  }

  function setStatus(cell, text, isError) {
    const status = cell.querySelector('.status');
    status.textContent = text;
    status.classList.toggle('error', Boolean(isError));
  }

  async function save(cell) {
    if (!reviewer()) {
      setStatus(cell, 'Enter your name (Reviewer) first.', true);
      showMark(cell);
      reviewerInput.focus();
      return;
    }
    const mark = {
      checkpoint: cell.dataset.checkpoint,
      id: cell.dataset.id,
      reviewer: reviewer(),
      labels: Array.from(cell.querySelectorAll('input[type=checkbox]:checked'), (b) => b.value),
      note: cell.querySelector('textarea').value.trim(),
      time: Date.now() / 1000,
    };
    if (data.mode === 'static') {
      remember(mark);
      localStorage.setItem(STORE_KEY, JSON.stringify(Array.from(marks.values())));
      setStatus(cell, 'saved in this browser (export to keep)');
      renderSummary();
      return;
    }
    setStatus(cell, 'saving…');
    try {
      const response = await fetch('api/marks', {
        method: 'POST',
        headers: {'Content-Type': 'application/json', 'X-Review-Token': data.token},
        body: JSON.stringify(mark),
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
      remember(body.mark);
      setStatus(cell, 'saved');
      renderSummary();
    } catch (error) {
      setStatus(cell, 'not saved: ' + error.message, true);
    }
  }

  function buildItem(item) {
    const section = el('section', {class: 'item', 'data-id': item.id});
    const head = el('div', {class: 'item-head'});
    if (item.image) {
      head.appendChild(el('img', {src: item.image, alt: 'evaluation image ' + item.id}));
    } else {
      head.appendChild(el('div', {class: 'missing'}, 'image missing'));
    }
    const text = el('div');
    text.appendChild(el('h2', {}, item.id));
    if (item.disease) text.appendChild(el('p', {class: 'disease'}, 'Label: ' + item.disease));
    text.appendChild(el('h3', {}, 'Reference caption'));
    text.appendChild(el('p', {class: 'reference'}, item.reference));
    head.appendChild(text);
    section.appendChild(head);

    const row = el('div', {class: 'generations'});
    data.checkpoints.forEach((checkpoint, index) => {
      const cell = el('div', {class: 'cell', 'data-checkpoint': checkpoint.name, 'data-id': item.id});
      cell.appendChild(el('h3', {}, checkpoint.name + ' (step ' + checkpoint.step + ')'));
      cell.appendChild(el('p', {class: 'generation'}, item.generations[index]));
      const boxes = el('fieldset');
      boxes.appendChild(el('legend', {class: 'hint'}, 'Marks'));
      for (const [label, title] of LABELS) {
        const wrap = el('label');
        const box = el('input', {type: 'checkbox', value: label});
        box.addEventListener('change', () => save(cell));
        wrap.appendChild(box);
        wrap.appendChild(document.createTextNode(' ' + title));
        boxes.appendChild(wrap);
      }
      cell.appendChild(boxes);
      const note = el('textarea', {maxlength: '2000', placeholder: 'note (optional)',
        'aria-label': 'note'});
      note.addEventListener('change', () => save(cell));
      cell.appendChild(note);
      cell.appendChild(el('div', {class: 'status', role: 'status'}));
      row.appendChild(cell);
      cells.push(cell);
    });
    section.appendChild(row);
    return section;
  }

  document.getElementById('items').replaceChildren(...data.items.map(buildItem));
  cells.forEach(showMark);
  renderSummary();

  reviewerInput.addEventListener('change', () => {
    localStorage.setItem('skinspector-reviewer', reviewer());
    cells.forEach(showMark);
  });

  // ------------------------------------------------------------------- export
  if (data.mode === 'static') {
    const button = document.getElementById('export');
    button.hidden = false;
    button.addEventListener('click', () => {
      const document_ = {
        format: data.export_format, version: 1, run: data.run,
        marks: Array.from(marks.values()),
      };
      const blob = new Blob([JSON.stringify(document_, null, 1)], {type: 'application/json'});
      const link = el('a', {href: URL.createObjectURL(blob),
        download: 'review-marks-' + data.run + (reviewer() ? '-' + reviewer() : '') + '.json'});
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    });
  }
})();
