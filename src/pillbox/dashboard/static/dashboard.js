// pillbox dashboard: refresh the parts of the page marked data-refresh without reloading,
// and ask before destructive actions. No build step, no dependencies.
(function () {
  "use strict";
  var seconds = parseFloat(document.body.dataset.refreshS || "5");
  var busy = false;

  function busyWith(el) {
    // Leave a region alone while the operator is using it.
    var active = document.activeElement;
    if (active && active !== document.body && el.contains(active)) return true;
    return el.querySelector("details[open]") !== null;
  }

  function refresh() {
    if (busy || document.hidden) return;
    var regions = document.querySelectorAll("[data-refresh]");
    if (!regions.length) return;
    busy = true;
    var pending = [];
    regions.forEach(function (el) {
      if (busyWith(el)) return;
      var url = new URL(window.location.href);
      url.searchParams.delete("done");
      url.searchParams.set("partial", el.dataset.refresh);
      pending.push(fetch(url.toString(), {
        credentials: "same-origin",
        headers: {"Accept": "text/html", "X-Requested-With": "fetch"}
      }).then(function (response) {
        if (response.status === 401) { window.location.reload(); return; }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text().then(function (html) {
          if (!busyWith(el)) el.innerHTML = html;  // server-rendered, already escaped
        });
      }));
    });
    Promise.all(pending).then(function () {
      stamp("updated " + new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC", false);
    }, function (err) {
      stamp("refresh failed (" + err.message + "); retrying", true);
    }).then(function () { busy = false; });
  }

  function stamp(text, failed) {
    var el = document.getElementById("refreshed");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("stale", failed);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  if (seconds > 0) window.setInterval(refresh, seconds * 1000);
})();
