"use strict";
// The live dashboard: fetches /v1/dashboard with a read key every REFRESH_MS and redraws.
// The key comes from the page address (#key=…, which browsers never send to the server) or the
// form, and is kept in sessionStorage: for this tab only.
const REFRESH_MS = 3000;
const KEY = "cxl-read-key";

function takeKeyFromAddress() {
  const match = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
}

function show(id, text) { document.getElementById(id).textContent = text; }

function setStatus(text, isError) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function askForKey(message) {
  const form = document.getElementById("key-form");
  form.hidden = false;
  setStatus(message, true);
}

async function refresh() {
  const key = sessionStorage.getItem(KEY);
  if (!key) { askForKey("a read key is needed"); return; }
  let response;
  try {
    response = await fetch("/v1/dashboard", { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
  } catch (error) {
    setStatus("server unreachable; retrying", true);
    return;
  }
  if (response.status === 401 || response.status === 403) {
    sessionStorage.removeItem(KEY);
    askForKey("this key may not read (" + response.status + "); give a read key");
    return;
  }
  if (!response.ok) { setStatus("server answered " + response.status + "; retrying", true); return; }
  const data = await response.json();
  document.getElementById("key-form").hidden = true;
  show("as-of", data.as_of);
  show("position", data.through_position.toLocaleString());
  show("ledger-position", data.ledger_position.toLocaleString());
  const v = document.getElementById("verification");
  v.textContent = "verification: " + data.verification.summary;
  v.className = data.verification.ok === null ? "pending" : (data.verification.ok ? "ok" : "failed");
  document.getElementById("report").innerHTML = data.body;
  setStatus("updated " + new Date().toLocaleTimeString(), false);
}

document.addEventListener("DOMContentLoaded", () => {
  takeKeyFromAddress();
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById("key").value.trim());
    refresh();
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
});
