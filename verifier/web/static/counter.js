// Counter page: sends pictures, camera frames or text to this server and shows the answer.
// No QR decoding here (the server uses zxing-cpp); no third-party code; data shown with
// textContent only.
"use strict";

(function () {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const L = page.labels;
  const $ = (id) => document.getElementById(id);
  const answerBox = $("answer");
  const CLEAR_AFTER_MS = 120000; // personal data does not stay on screen
  const SCAN_EVERY_MS = 600;
  let clearTimer = null;
  let busy = false;
  let scanning = false;
  let stream = null;
  let lastCameraText = null;

  function service() {
    const checked = document.querySelector('input[name="service"]:checked');
    return checked ? checked.value : "counter";
  }

  function both(label) { return label.en + " / " + label.zh; }

  function ageWords(seconds) {
    if (seconds < 60) return seconds + " s";
    const m = Math.floor(seconds / 60), h = Math.floor(seconds / 3600), d = Math.floor(seconds / 86400);
    if (d) return d + " d " + (h % 24) + " h";
    if (h) return h + " h " + (m % 60) + " min";
    return m + " min";
  }

  function setVerdict(state, word, en, zh) {
    answerBox.dataset.state = state;
    // On a phone the answer sits below the controls: bring it into view.
    if (state !== "idle" && state !== "busy" && window.innerWidth <= 900) {
      answerBox.scrollIntoView({ block: "start" });
    }
    const w = $("verdict-word");
    w.textContent = "";
    w.append(word.en + " ");
    const z = document.createElement("span");
    z.lang = "zh";
    z.textContent = word.zh;
    w.append(z);
    $("reason-en").textContent = en || "";
    $("reason-zh").textContent = zh || "";
  }

  function resetAnswer() {
    setVerdict("idle", { en: "Ready", zh: "请扫描" }, "", "");
    $("holder").hidden = true;
    $("fields").textContent = "";
    $("answer-meta").textContent = "";
    $("portrait").hidden = true;
    $("portrait").removeAttribute("src");
  }

  function addField(dl, label, value, cls) {
    const dt = document.createElement("dt");
    dt.textContent = both(label);
    const dd = document.createElement("dd");
    if (cls) dd.className = cls;
    if (value instanceof Node) dd.append(value); else dd.textContent = value;
    dl.append(dt, dd);
  }

  function entitlementName(value) {
    const name = page.entitlements[value];
    return name ? name.en + " " + name.zh : value;
  }

  function showAnswer(answer) {
    if (answer.scan_error) { showRescan(answer); return; }
    const ok = answer.ok === true;
    setVerdict(ok ? "accepted" : "refused", ok ? L.accepted : L.refused,
               answer.reason.en, answer.reason.zh);
    const dl = $("fields");
    dl.textContent = "";
    const asked = answer.entitlement_asked;
    const askedText = asked ? entitlementName(asked) : answer.purpose_asked + " code";
    const holder = answer.holder;
    if (ok) {
      if (holder) {
        addField(dl, L.name, holder.surname + ", " + holder.given_names, "name");
        addField(dl, L.foreigner_code, holder.foreigner_code, "code");
        addField(dl, L.nationality, holder.nationality);
        addField(dl, L.birth_date, holder.birth_date);
        addField(dl, L.sex, holder.sex);
      }
      const askedNode = document.createElement("span");
      askedNode.className = "granted";
      askedNode.textContent = "✔ " + askedText;
      addField(dl, L.asked, askedNode);
      addField(dl, L.entitlements, answer.entitlements.map(entitlementName).join(", ") || "-");
      addField(dl, L.card, answer.card || "-");
      const issuer = answer.issuer;  // the issuing city, set only after the signature passed
      if (issuer) {
        const names = [issuer.name_zh, issuer.name_en].filter(Boolean).join(" ");
        addField(dl, L.issuer, names ? names + " (" + issuer.code + ")" : issuer.code, "issuer");
      }
      const img = $("portrait");
      if (answer.portrait_url) {
        img.src = answer.portrait_url;
        img.hidden = false;
        $("no-portrait").hidden = true;
      } else {
        img.hidden = true;
        img.removeAttribute("src");
        $("no-portrait").hidden = false;
      }
      $("portrait-box").hidden = !holder;
      $("holder").classList.toggle("no-figure", !holder);
      $("holder").hidden = false;
    } else {
      const askedNode = document.createElement("span");
      askedNode.className = answer.code === "ENTITLEMENT_MISSING" ? "missing" : "";
      askedNode.textContent = askedText;
      addField(dl, L.asked, askedNode);
      addField(dl, L.reason, answer.code + (answer.detail ? " — " + answer.detail : ""));
      $("portrait-box").hidden = true;
      $("holder").classList.add("no-figure");
      $("holder").hidden = false;
    }
    const svc = page.services[answer.service];
    $("answer-meta").textContent =
      (svc ? both(svc) : answer.service) + " · " + new Date(answer.checked_at).toLocaleTimeString() +
      " · " + both(L.cache_age) + ": " + ageWords(answer.cache_age_seconds) + " ago (trust list v" +
      answer.trust_list_version + ")" + (answer.cache_fallback ? " · previous cache used" : "");
    clearTimeout(clearTimer);
    clearTimer = setTimeout(resetAnswer, CLEAR_AFTER_MS);
  }

  // No code could be read from the picture: nothing was said about any card, so the
  // answer is a neutral "scan again" with the same code the CLI prints, never a red REFUSED.
  function showRescan(answer) {
    setVerdict("rescan", L.scan_again, answer.reason.en, answer.reason.zh);
    const dl = $("fields");
    dl.textContent = "";
    addField(dl, L.reason, answer.code);
    $("portrait-box").hidden = true;
    $("holder").classList.add("no-figure");
    $("holder").hidden = false;
    $("answer-meta").textContent = "";
    clearTimeout(clearTimer);
    clearTimer = setTimeout(resetAnswer, CLEAR_AFTER_MS);
  }

  function showProblem(problem) {
    const reason = problem.reason || { en: "The counter page could not reach its server.", zh: "无法连接本机服务。" };
    setVerdict("error", { en: "Not checked", zh: "未核验" }, reason.en, reason.zh);
    $("holder").hidden = true;
    $("answer-meta").textContent = (problem.code || "ERROR") + (problem.detail ? " — " + problem.detail : "");
  }

  async function post(url, form) {
    const response = await fetch(url, { method: "POST", body: form, credentials: "same-origin" });
    let body = null;
    try { body = await response.json(); } catch (e) { body = { code: "BAD_RESPONSE" }; }
    return { status: response.status, body: body };
  }

  async function check(form) {
    if (busy) return;
    busy = true;
    setVerdict("busy", { en: "Checking…", zh: "核验中…" }, "", "");
    form.append("service", service());
    try {
      const { status, body } = await post("/api/check", form);
      if (status === 200 && typeof body.ok === "boolean" && body.reason) showAnswer(body);
      else showProblem(body);
    } catch (e) {
      showProblem({});
    } finally {
      busy = false;
      if (!stream) $("text-input").focus(); // ready for the next USB-scanner code
    }
  }

  $("file-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const form = new FormData();
    form.append("image", file, file.name);
    check(form).finally(() => { event.target.value = ""; });
  });

  $("text-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("text-input");
    const text = input.value.trim();
    if (!text) return;
    const form = new FormData();
    form.append("text", text);
    input.value = "";
    check(form);
  });

  // Camera: frames are decoded on the server; each distinct code is checked once, so a
  // phone held in front of the camera does not turn an ACCEPTED into REPLAYED.
  async function scanOnce() {
    if (!scanning || busy || !stream) return;
    const video = $("camera");
    if (!video.videoWidth) return;
    const canvas = $("frame");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
    if (!blob || !scanning) return;
    const form = new FormData();
    form.append("image", blob, "frame.jpg");
    busy = true;
    let result;
    try { result = await post("/api/decode", form); } catch (e) { result = null; } finally { busy = false; }
    if (!result || result.status !== 200 || !result.body.text) return;
    if (result.body.text === lastCameraText) return;
    lastCameraText = result.body.text;
    scanning = false;
    $("next-button").hidden = false;
    const checkForm = new FormData();
    checkForm.append("text", result.body.text);
    await check(checkForm);
  }

  async function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showProblem({ code: "NO_CAMERA", reason: { en: "No camera available in this browser.", zh: "此浏览器无法使用摄像头。" } });
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: "environment", width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
    } catch (e) {
      showProblem({ code: "NO_CAMERA", reason: { en: "The camera could not be opened: " + e.name, zh: "无法打开摄像头。" } });
      return;
    }
    $("camera").srcObject = stream;
    $("camera-box").hidden = false;
    scanning = true;
    $("next-button").hidden = true;
  }

  function stopCamera() {
    scanning = false;
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    $("camera-box").hidden = true;
  }

  $("camera-button").addEventListener("click", startCamera);
  $("stop-button").addEventListener("click", stopCamera);
  $("next-button").addEventListener("click", () => {
    resetAnswer();
    scanning = true;
    $("next-button").hidden = true;
  });
  setInterval(scanOnce, SCAN_EVERY_MS);

  async function refreshStatus() {
    const box = $("cache-status");
    try {
      const response = await fetch("/api/status", { credentials: "same-origin" });
      const body = await response.json();
      if (response.ok) {
        box.textContent = both(L.cache_age) + ": " + ageWords(body.cache_age_seconds) +
          " ago · trust list v" + body.trust_list_version;
        box.classList.toggle("stale", body.cache_age_seconds > body.status_grace_seconds);
      } else {
        box.textContent = body.reason ? body.reason.en + " " + body.reason.zh : body.code;
        box.classList.add("stale");
      }
    } catch (e) {
      box.textContent = "server unreachable / 无法连接本机服务";
      box.classList.add("stale");
    }
  }
  refreshStatus();
  setInterval(refreshStatus, 30000);
  resetAnswer();
  $("text-input").focus();
})();
