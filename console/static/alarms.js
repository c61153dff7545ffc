// Alarms: the count of active alarms in the header, and the alarms of a
// device on its page, each loaded from a part of the alarms page
// (data-alarms-src) when the page opens and again every 30 seconds.
(function () {
  "use strict";
  function load(el) {
    fetch(el.dataset.alarmsSrc, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        if (el.dataset.alarmsCount !== undefined) {
          // A badge only when there are active alarms.
          var n = html.trim();
          el.textContent = n;
          el.className = n === "" ? "" : "badge bad";
        } else {
          el.innerHTML = html;
        }
      })
      .catch(function () {});
  }
  function all() { document.querySelectorAll("[data-alarms-src]").forEach(load); }
  all();
  setInterval(all, 30000);
})();
