// trustpath console. What JavaScript adds to the server-rendered pages:
// the audit token kept in this tab's sessionStorage (sent as a bearer
// header, never a cookie or URL), page loads with it, the in-browser proof
// check (RFC 9162 inclusion + C2SP signed-note checkpoint, WebCrypto), the
// live follow of new entries, and copy buttons. No other origin, no inline
// script: the Content-Security-Policy allows this file only.
'use strict';

(() => {
  const TOKEN = 'trustpath.audit-token';
  const utf8 = new TextEncoder();

  const token = () => sessionStorage.getItem(TOKEN);
  const auth = () => (token() ? { authorization: 'Bearer ' + token() } : {});

  // ------------------------------------------------------------ pages

  /** Loads a console page with the token and puts its <main> in place. */
  async function load(url, push) {
    stopFollow();
    let response;
    try {
      response = await fetch(url, { headers: auth(), credentials: 'omit', cache: 'no-store' });
    } catch (e) {
      say(document.querySelector('main'), 'The server could not be reached: ' + e.message);
      return;
    }
    if (response.status === 401 || response.status === 403) sessionStorage.removeItem(TOKEN);
    const page = new DOMParser().parseFromString(await response.text(), 'text/html');
    const main = page.querySelector('main');
    if (!main) {
      say(document.querySelector('main'), 'Unexpected answer: HTTP ' + response.status);
      return;
    }
    document.querySelector('main').replaceWith(document.importNode(main, true));
    document.title = page.title;
    if (push) history.pushState(null, '', url);
    ready();
    const heading = document.querySelector('main h1');
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  }

  function say(where, message) {
    const p = document.createElement('p');
    p.className = 'problem';
    p.setAttribute('role', 'alert');
    p.textContent = message;
    where.prepend(p);
  }

  /** Shows what needs JavaScript; fetches the page when a token is kept. */
  function ready() {
    for (const el of document.querySelectorAll('button.copy, #follow-label')) el.hidden = false;
    document.getElementById('forget').hidden = !token();
    if (document.getElementById('token-needed') && token()) {
      load(location.pathname + location.search, false);
    }
  }

  const here = () => location.pathname + location.search;

  function searchUrl(form) {
    const query = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value) query.append(name, value);
    const text = query.toString();
    return text ? '?' + text : '';
  }

  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (form.id === 'token-form') {
      event.preventDefault();
      sessionStorage.setItem(TOKEN, form.elements.token.value.trim());
      load(here(), false);
    } else if (form.id === 'search') {
      event.preventDefault();
      load('/console/' + searchUrl(form), true);
    }
  });

  document.addEventListener('click', (event) => {
    const link = event.target.closest('a[href^="/console/"]');
    if (link && event.button === 0 && !event.ctrlKey && !event.metaKey && !event.shiftKey) {
      event.preventDefault();
      load(link.getAttribute('href'), true);
      return;
    }
    const button = event.target.closest('button');
    if (!button) return;
    if (button.classList.contains('copy')) copy(button);
    else if (button.classList.contains('verify')) verify(button.dataset.seq);
    else if (button.id === 'forget') {
      sessionStorage.removeItem(TOKEN);
      stopFollow();
      location.assign('/console/');
    }
  });

  document.addEventListener('change', (event) => {
    if (event.target.id === 'follow') {
      if (event.target.checked) startFollow();
      else stopFollow();
    }
  });

  window.addEventListener('popstate', () => load(here(), false));

  async function copy(button) {
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Copy failed';
    }
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  }

  // ------------------------------------------------------------ live follow

  let following = null;

  function stopFollow() {
    if (following) following.abort();
    following = null;
    const status = document.getElementById('follow-status');
    if (status) status.textContent = '';
  }

  async function startFollow() {
    stopFollow();
    const controller = new AbortController();
    following = controller;
    const status = document.getElementById('follow-status');
    const form = document.getElementById('search');
    try {
      const response = await fetch('/console/live' + searchUrl(form), {
        headers: auth(), credentials: 'omit', signal: controller.signal,
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        status.textContent = 'Follow refused: ' + (body.message || 'HTTP ' + response.status);
        document.getElementById('follow').checked = false;
        return;
      }
      status.textContent = 'Following new entries…';
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          event(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
      if (following === controller) status.textContent = 'The server ended the follow.';
    } catch (e) {
      if (e.name !== 'AbortError') status.textContent = 'Follow stopped: ' + e.message;
    }
  }

  /** One server-sent event: an `entry` carries a rendered table row. */
  function event(block) {
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) name = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (name !== 'entry') return;
    const template = document.createElement('template');
    template.innerHTML = '<table><tbody>' + data.join('\n') + '</tbody></table>';
    const row = template.content.querySelector('tr');
    const rows = document.getElementById('rows');
    if (!row || !rows) return;
    row.classList.add('live');
    rows.prepend(row);
    const none = document.getElementById('no-results');
    if (none) none.remove();
  }

  // ------------------------------------------------------------ proofs

  async function verify(seq) {
    const out = document.querySelector(`output.verify-result[data-seq="${CSS.escape(seq)}"]`);
    out.className = 'verify-result';
    out.textContent = 'Checking…';
    try {
      out.textContent = '✓ Verified: ' + (await prove(Number(seq)));
      out.classList.add('ok');
    } catch (e) {
      out.textContent = '✕ Failed: ' + e.message;
      out.classList.add('failed');
    }
  }

  async function get(url, as) {
    const response = await fetch(url, { headers: auth(), credentials: 'omit', cache: 'no-store' });
    if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
    return as === 'json' ? response.json() : response.text();
  }

  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  function base64(text) {
    const raw = atob(text);
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  /** The pinned signed-note verifier key: name+hexhash+base64(0x01 ‖ key). */
  async function pinnedKey() {
    const vkey = document.body.dataset.logVerifier || '';
    // name+hash+key: the base64 key may itself hold '+'.
    const [name, hash] = vkey.split('+', 2);
    const key = vkey.slice((name || '').length + (hash || '').length + 2);
    if (!name || !hash || !key) throw new Error('no log verifier key is pinned');
    const raw = base64(key);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error('the pinned key is not an Ed25519 note key');
    const expected = (await sha256(concat(utf8.encode(name + '\n'), raw))).slice(0, 4);
    if (hex(expected) !== hash) throw new Error('the pinned key hash does not match its key');
    const publicKey = await crypto.subtle.importKey('raw', raw.slice(1), { name: 'Ed25519' }, false, ['verify']);
    return { name, hash: expected, publicKey };
  }

  /** Opens a C2SP signed note: checks the pinned key's Ed25519 signature. */
  async function checkpoint(note, key) {
    const split = note.indexOf('\n\n');
    if (split < 0) throw new Error('the checkpoint has no signature block');
    const body = note.slice(0, split + 1);
    const [origin, size, root] = body.split('\n');
    if (origin !== key.name) throw new Error(`the checkpoint is for ${origin}, not ${key.name}`);
    if (!/^\d+$/.test(size)) throw new Error('the checkpoint size is malformed');
    for (const line of note.slice(split + 2).split('\n')) {
      const match = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!match || match[1] !== key.name) continue;
      const blob = base64(match[2]);
      if (blob.length !== 68 || !same(blob.slice(0, 4), key.hash)) continue;
      const good = await crypto.subtle.verify('Ed25519', key.publicKey, blob.slice(4), utf8.encode(body));
      if (!good) throw new Error('the checkpoint signature does not verify');
      return { size: Number(size), root: base64(root) };
    }
    throw new Error(`the checkpoint is not signed by the pinned key ${key.name}`);
  }

  const node = async (left, right) => sha256(concat(Uint8Array.of(1), left, right));

  /** RFC 9162 §2.1.3.2: the root an inclusion path leads to. */
  async function rootFrom(index, size, leaf, path) {
    let fn = index;
    let sn = size - 1;
    let r = leaf;
    for (const p of path) {
      if (sn === 0) throw new Error('the inclusion proof is too long');
      if (fn % 2 === 1 || fn === sn) {
        r = await node(p, r);
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await node(r, p);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Error('the inclusion proof is too short');
    return r;
  }

  /** Checks entry `seq` against the latest checkpoint; what it proved. */
  async function prove(seq) {
    const key = await pinnedKey();
    const signed = await checkpoint(await get('/v1/log/checkpoint', 'text'), key);
    if (seq >= signed.size) {
      throw new Error(`entry ${seq} is not under a signed checkpoint yet (size ${signed.size}); try again shortly`);
    }
    const entry = await get('/v1/log/entries/' + seq, 'json');
    let leaf;
    let what;
    if (entry.expired) {
      // Retention removed the bytes; the leaf hash is all there is to prove.
      leaf = base64(entry.leaf_hash);
      what = 'the expired entry\'s leaf hash';
    } else {
      const commitment = entry.commitment;
      if (JSON.parse(commitment).seq !== seq) throw new Error('the entry claims another seq');
      // Each disclosure must match a seal: in the commitment, or nested
      // in another disclosure's value (LOG-FORMAT.md).
      const disclosures = entry.disclosures || [];
      const sealed = [commitment, ...disclosures].join('\n');
      for (const disclosure of disclosures) {
        const seal = hex(await sha256(utf8.encode(disclosure)));
        if (!sealed.includes(`"sha256":"${seal}"`)) {
          throw new Error('a disclosed field matches no seal in the entry');
        }
      }
      leaf = await sha256(concat(Uint8Array.of(0), utf8.encode(commitment)));
      what = 'the entry as stored';
    }
    const proof = await get(`/v1/log/proof/inclusion?seq=${seq}&tree_size=${signed.size}`, 'json');
    const root = await rootFrom(seq, signed.size, leaf, proof.proof.map(base64));
    if (!same(root, signed.root)) {
      throw new Error('the entry is not the one the signed checkpoint commits to (altered?)');
    }
    return `${what} is leaf ${seq} of the ${signed.size}-entry tree signed by ${key.name}`;
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', ready);
  else ready();
})();
