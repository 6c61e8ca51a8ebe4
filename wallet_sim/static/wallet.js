// Renews the QR every data-renew seconds and shows a countdown. No inline script (CSP).
(function () {
  "use strict";
  var img = document.getElementById("qr");
  var label = document.getElementById("countdown");
  if (!img || !label) { return; }
  var period = Number(img.getAttribute("data-renew")) || 30;
  var template = label.getAttribute("data-template") || "{s}";
  var left = period;

  function show() { label.textContent = template.replace("{s}", String(left)); }

  function renew() {
    left = period;
    label.textContent = label.getAttribute("data-renewing") || "";
    var src = img.getAttribute("data-src");
    img.src = src + (src.indexOf("?") < 0 ? "?" : "&") + "t=" + Date.now();
  }

  img.addEventListener("load", function () { left = period; show(); });
  window.setInterval(function () {
    left -= 1;
    if (left <= 0) { renew(); } else { show(); }
  }, 1000);
  // A phone that comes back from the lock screen shows a fresh code at once.
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { renew(); }
  });
}());
