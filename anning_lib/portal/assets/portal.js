// The portal's one script for its server-rendered pages (anning_lib/portal/html_page.py).
// 1. A page whose <body> has data-live-url fetches that JSON every data-live-period-ms and puts each part
//    ({"element id": "html"}) into the element of that id; a session that has ended reloads the page (log-in).
// 2. A <select data-submit> submits its form when changed (the form's button does the same without script).
(function () {
  "use strict";
  var body = document.body, url = body.dataset.liveUrl, period = Number(body.dataset.livePeriodMs) || 5000;
  var last = null;
  function tick() {
    fetch(url, {credentials: "same-origin", cache: "no-cache"}).then(function (r) {
      if (r.status === 401 || r.status === 403) { window.location.reload(); return null; }
      return r.ok ? r.text() : null;
    }).then(function (text) {
      body.dataset.stale = text === null ? "1" : "";
      if (text === null || text === last) { return; }
      last = text;
      var parts = JSON.parse(text);
      Object.keys(parts).forEach(function (id) {
        var el = document.getElementById(id);
        if (el) { el.innerHTML = parts[id]; }
      });
    }).catch(function () { body.dataset.stale = "1"; }).then(function () { window.setTimeout(tick, period); });
  }
  if (url) { window.setTimeout(tick, period); }
  document.querySelectorAll("select[data-submit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });
})();
