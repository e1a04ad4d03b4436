// Small DOM helpers (no framework).

/** Create an element: h('p', {class: 'x', onclick: f}, 'text', child). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Replace el's children, skipping null/false (replaceChildren would print "null"). */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));
}

/** A random hex id (crypto.randomUUID needs a secure context; the box is plain HTTP). */
export function randomId(bytes = 16) {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(data, (b) => b.toString(16).padStart(2, '0')).join('');
}

export const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });

let noticeTimer = 0;

/** Show a short message in the page-wide live region; it goes away by itself. */
export function notify(text, kind = 'info') {
  const box = document.getElementById('notice');
  if (!box) return;
  clearTimeout(noticeTimer);
  box.textContent = text;
  box.className = `notice notice-${kind}`;
  box.hidden = !text;
  const ms = { ok: 5000, info: 5000, warn: 15000 }[kind];
  if (text && ms) noticeTimer = setTimeout(() => { box.hidden = true; }, ms);
}
