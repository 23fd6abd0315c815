// The integrity banner: every check runs here, in the browser, with WebCrypto.
// 1. the latest signed tree head: Ed25519 over the message of policies/treehead.py, with the
//    key pinned in localStorage the first time (a different key later is red);
// 2. consistency (RFC 9162 2.1.4.2) with the head this browser saw last (localStorage);
// 3. inclusion (RFC 9162 2.1.3.2) of every entry shown on the page ([data-entry-index]).
"use strict";
(function () {
  const HEADER = "gov-data-sandbox transparency log tree head v1";
  const PIN = "sbx-pinned-key", LAST = "sbx-last-head", WITNESSES = "sbx-pinned-witnesses";
  const COSIGN = "gov-data-sandbox witness cosignature v1";
  const enc = new TextEncoder();

  const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
  const unhex = (s) => new Uint8Array((s.match(/../g) || []).map((h) => parseInt(h, 16)));
  const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const cat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  };
  const sha = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const leafHash = (entry) => sha(cat(new Uint8Array([0]), entry));
  const nodeHash = (l, r) => sha(cat(new Uint8Array([1]), l, r));

  async function verifyInclusion(index, size, leaf, path, root) {
    if (index >= size) return false;
    let fn = index, sn = size - 1, r = leaf;
    for (const p of path) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        if (fn % 2 === 0) { while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); } }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 && eq(r, root);
  }

  async function verifyConsistency(first, second, firstRoot, secondRoot, path) {
    if (first === 0) return path.length === 0;
    if (first > second) return false;
    if (first === second) return path.length === 0 && eq(firstRoot, secondRoot);
    if ((first & (first - 1)) === 0) path = [firstRoot, ...path];
    if (path.length === 0) return false;
    let fn = first - 1, sn = second - 1;
    while (fn % 2 === 1) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    let fr = path[0], sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        fr = await nodeHash(c, fr); sr = await nodeHash(c, sr);
        if (fn % 2 === 0) { while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); } }
      } else {
        sr = await nodeHash(sr, c);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 && eq(fr, firstRoot) && eq(sr, secondRoot);
  }

  async function verifyHead(head, keyRaw) {
    const key = await crypto.subtle.importKey("raw", keyRaw, { name: "Ed25519" }, false, ["verify"]);
    const msg = enc.encode(`${HEADER}\n${head.size}\n${head.root}\n${head.timestamp_ms}\n`);
    return crypto.subtle.verify({ name: "Ed25519" }, key, unhex(head.signature), msg);
  }

  // 4. witness cosignatures (policies/witness.py): each over exactly this head, verified with
  //    the witness's key, the keys pinned the first time this browser saw each witness.
  async function checkCosignatures(head) {
    const pinned = JSON.parse(localStorage.getItem(WITNESSES) || "{}");
    let good = 0;
    for (const c of head.cosignatures) {
      const same = c.size === head.size && c.root === head.root &&
        c.head_timestamp_ms === head.timestamp_ms && c.authority_key_id === head.key_id;
      if (pinned[c.witness] && pinned[c.witness] !== c.public_key) {
        problems.push(`witness ${c.witness} signs with a different key than this browser pinned`);
        continue;
      }
      const key = await crypto.subtle.importKey("raw", unhex(c.public_key), { name: "Ed25519" }, false, ["verify"]);
      const msg = enc.encode(`${COSIGN}\n${c.authority_key_id}\n${c.size}\n${c.root}\n` +
        `${c.head_timestamp_ms}\n${c.witness}\n${c.timestamp_ms}\n`);
      const ok = same && await crypto.subtle.verify({ name: "Ed25519" }, key, unhex(c.signature), msg);
      if (!ok) { problems.push(`the cosignature of witness ${c.witness} does not verify`); continue; }
      pinned[c.witness] = c.public_key;
      good += 1;
    }
    localStorage.setItem(WITNESSES, JSON.stringify(pinned));
    const names = head.cosignatures.map((c) => c.witness).join(", ");
    return `witness cosignatures verified: ${good} of ${head.cosignatures.length}` + (names ? ` (${names})` : "");
  }

  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return r.json();
  }

  const problems = [], notes = [];
  let head = null;

  function show(state) {
    const banner = document.getElementById("integrity");
    const status = document.getElementById("integrity-status");
    const detail = document.getElementById("integrity-detail");
    banner.classList.remove("pending", "ok", "bad");
    banner.classList.add(state);
    banner.dataset.state = state;
    if (state === "bad") status.textContent = "FAILED: " + problems.join("; ");
    else if (state === "ok") status.textContent = "verified in this browser";
    else status.textContent = "checking in this browser…";
    detail.textContent = notes.join(" · ");
  }

  async function checkHead() {
    head = await getJSON("/api/head");
    const banner = document.getElementById("integrity");
    const keyHex = head.public_key;
    const pinned = localStorage.getItem(PIN);
    if (pinned && pinned !== keyHex) problems.push(`the log is signed by a different key than the one this browser pinned (${pinned.slice(0, 16)}…)`);
    if (!pinned) localStorage.setItem(PIN, keyHex);
    if (keyHex !== banner.dataset.key) problems.push("the page and the API name different keys");
    const sigOk = await verifyHead(head, unhex(keyHex));
    if (!sigOk) problems.push("the tree head's Ed25519 signature does not verify");
    notes.push(`tree head: ${head.size} entries, root ${head.root.slice(0, 16)}…, ` +
      `${new Date(head.timestamp_ms).toISOString()}, key ${head.key_id}, signature ${sigOk ? "valid" : "INVALID"}`);
    notes.push(await checkCosignatures(head));
    const lastRaw = localStorage.getItem(LAST);
    let consistent = true;
    if (lastRaw) {
      const last = JSON.parse(lastRaw);
      if (last.size > head.size) {
        consistent = false;
        problems.push(`the log shrank: this browser saw ${last.size} entries, now ${head.size}`);
      } else {
        const proof = await getJSON(`/api/consistency?first=${last.size}&second=${head.size}`);
        consistent = await verifyConsistency(last.size, head.size, unhex(last.root), unhex(head.root), proof.path.map(unhex));
        if (!consistent) problems.push(`the log is not an extension of the head this browser saw (size ${last.size}): forked or rewritten`);
      }
      notes.push(`consistent with the head seen before (size ${last.size}): ${consistent ? "yes" : "NO"}`);
    } else {
      notes.push("first visit from this browser: head remembered");
    }
    if (sigOk && consistent && problems.length === 0) localStorage.setItem(LAST, JSON.stringify({ size: head.size, root: head.root }));
  }

  async function checkEntries(root) {
    const cells = Array.from(root.querySelectorAll("[data-entry-index]"));
    const wanted = cells.map((c) => Number(c.dataset.entryIndex)).filter((i) => i < head.size);
    if (wanted.length === 0) return;
    const answer = await getJSON(`/api/proofs?size=${head.size}&indexes=${wanted.join(",")}`);
    const rootHash = unhex(head.root);
    let good = 0;
    for (const p of answer.proofs) {
      const ok = await verifyInclusion(p.index, head.size, await leafHash(unb64(p.entry)), p.path.map(unhex), rootHash);
      for (const c of cells.filter((c) => Number(c.dataset.entryIndex) === p.index)) {
        c.dataset.proof = ok ? "ok" : "bad";
        const mark = c.querySelector(".proof") || (c.id === "proof-status" ? c : null);
        if (mark) mark.textContent = ok ? "✓ included" : "✗ NOT in the signed tree";
      }
      if (ok) good += 1;
      else problems.push(`entry ${p.index} does not match the signed tree head (edited?)`);
    }
    notes.push(`entries on this page: ${good}/${answer.proofs.length} proven included`);
  }

  async function run(root) {
    try {
      if (head === null) await checkHead();
      await checkEntries(root);
      show(problems.length ? "bad" : "ok");
    } catch (err) {
      problems.push(String(err && err.message ? err.message : err));
      show("bad");
    }
  }

  document.addEventListener("DOMContentLoaded", () => run(document));
  document.body && document.body.addEventListener("htmx:afterSwap", (e) => run(e.target));
  document.addEventListener("htmx:afterSwap", (e) => { if (!document.body) run(e.target); });
})();
