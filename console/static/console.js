// The desired-state editor: each value is checked as JSON while it is
// typed (unless its Text box is ticked), the reason shown beside it, and
// the form is not sent while a value is not valid. The server checks
// again and saves nothing on an error.
(function () {
  "use strict";
  function check(input) {
    var row = input.closest("td");
    var box = row && row.querySelector(".astext input");
    var err = row && row.querySelector(".field-error");
    var v = input.value.trim();
    var msg = "";
    if (v !== "" && !(box && box.checked)) {
      try {
        JSON.parse(v);
      } catch (e) {
        msg = 'not valid JSON: type text in quotes ("eco"), or tick Text';
      }
    }
    if (err) {
      err.textContent = msg;
      err.hidden = msg === "";
    }
    if (msg) {
      input.setAttribute("aria-invalid", "true");
    } else {
      input.removeAttribute("aria-invalid");
    }
    return msg === "";
  }
  document.addEventListener("input", function (ev) {
    var t = ev.target;
    if (t.matches && t.matches("form.editor input[data-json]")) {
      check(t);
    } else if (t.matches && t.matches("form.editor .astext input")) {
      var input = t.closest("td").querySelector("input[data-json]");
      if (input) {
        check(input);
      }
    }
  });
  document.addEventListener("change", function (ev) {
    var t = ev.target;
    if (t.matches && t.matches("form.editor .astext input")) {
      var input = t.closest("td").querySelector("input[data-json]");
      if (input) {
        check(input);
      }
    }
  });
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.matches || !form.matches("form.editor")) {
      return;
    }
    var ok = true;
    form.querySelectorAll("input[data-json]").forEach(function (input) {
      ok = check(input) && ok;
    });
    if (!ok) {
      ev.preventDefault();
      var first = form.querySelector('input[aria-invalid="true"]');
      if (first) {
        first.focus();
      }
    }
  });
  // After an error or a conflict the editor holds what was typed: live
  // updates leave it alone.
  document.querySelectorAll("form.editor.kept").forEach(function (form) {
    var region = form.closest("[data-live-unless-edited]");
    if (region) {
      region.dataset.edited = "1";
    }
  });
})();

// Live regions: an element with data-live-src and data-live-on="kind ..."
// is fetched again (a server-rendered part of the page) whenever the
// page's event stream (main[data-events]) sends an event of that kind.
(function () {
  "use strict";
  var main = document.querySelector("main[data-events]");
  var status = document.getElementById("live-status");
  if (!main || !window.EventSource) {
    return;
  }
  var busy = new Map();

  function editing(el) {
    var a = document.activeElement;
    return a && el.contains(a) && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT");
  }

  // A region marked data-live-unless-edited (the desired-state editor)
  // is left alone once the visitor has typed in it.
  document.querySelectorAll("[data-live-unless-edited]").forEach(function (el) {
    el.addEventListener("input", function () { el.dataset.edited = "1"; });
  });

  function refresh(el) {
    if (el.dataset.edited) {
      return;
    }
    if (busy.get(el)) {
      busy.set(el, "again");
      return;
    }
    if (editing(el)) {
      return;
    }
    busy.set(el, "busy");
    fetch(el.dataset.liveSrc, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.status === 401) {
          window.location.reload();
        }
        return r.ok ? r.text() : Promise.reject(r.status);
      })
      .then(function (html) {
        el.innerHTML = html;
        el.dataset.updated = String(Date.now());
      })
      .catch(function () {})
      .then(function () {
        var again = busy.get(el) === "again";
        busy.delete(el);
        if (again) {
          refresh(el);
        }
      });
  }

  function on(kind) {
    document.querySelectorAll("[data-live-on]").forEach(function (el) {
      if (el.dataset.liveOn.split(" ").indexOf(kind) >= 0) {
        refresh(el);
      }
    });
  }

  function setStatus(s) {
    if (status) {
      status.dataset.state = s;
      status.title = s === "live" ? "live updates on" : "reconnecting…";
    }
  }

  var es = new EventSource(main.dataset.events);
  ["fleet", "shadow", "telemetry", "models"].forEach(function (kind) {
    es.addEventListener(kind, function () { on(kind); });
  });
  var opened = false;
  es.onopen = function () {
    setStatus("live");
    if (opened) {
      // Back after a break: what changed meanwhile was not announced.
      ["fleet", "shadow", "telemetry", "models"].forEach(on);
    }
    opened = true;
  };
  es.onerror = function () { setStatus("connecting"); };
  window.addEventListener("pagehide", function () { es.close(); });
})();
