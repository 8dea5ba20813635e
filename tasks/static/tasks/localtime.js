/* One date format on every page: each <time class="task-time" datetime="ISO"> the server
 * rendered (in the site's time zone, readable without JavaScript) is shown in the reader's
 * locale and time zone, with the ISO form on hover. window.TaskTime formats times the
 * live scripts add. data-time-only shows the time alone (the live feed); data-compact
 * (list columns) the time alone for today, else the day and minute.
 */
(function () {
  "use strict";

  var DATE_TIME = {year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
                   minute: "2-digit", second: "2-digit"};
  var TIME = {hour: "2-digit", minute: "2-digit", second: "2-digit"};
  var DAY_TIME = {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"};

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() &&
      a.getDate() === b.getDate();
  }

  function options(base, precise) {
    var o = {};
    Object.keys(base).forEach(function (k) { o[k] = base[k]; });
    if (precise && o.second) { o.fractionalSecondDigits = 3; }
    return o;
  }

  // compact (list columns): the time alone for today, else the day and minute.
  function format(iso, precise, timeOnly, compact) {
    var d = new Date(iso);
    if (isNaN(d)) { return ""; }
    var base = timeOnly ? TIME : DATE_TIME;
    if (compact) { base = sameDay(d, new Date()) ? TIME : DAY_TIME; }
    try {
      return new Intl.DateTimeFormat(undefined, options(base, precise)).format(d);
    } catch (e) {
      return d.toLocaleString();
    }
  }

  function node(iso, opts) {
    opts = opts || {};
    var t = document.createElement("time");
    t.className = "task-time";
    t.setAttribute("datetime", iso);
    t.setAttribute("title", iso);
    if (opts.timeOnly) { t.setAttribute("data-time-only", ""); }
    t.textContent = format(iso, opts.precise, opts.timeOnly);
    return t;
  }

  function localise(root) {
    var times = (root || document).querySelectorAll("time.task-time[datetime]");
    Array.prototype.forEach.call(times, function (t) {
      var text = format(t.getAttribute("datetime"), t.hasAttribute("data-precise"),
                        t.hasAttribute("data-time-only"), t.hasAttribute("data-compact"));
      if (text) { t.textContent = text; }
    });
  }

  window.TaskTime = {format: format, node: node, localise: localise};

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { localise(); });
  } else {
    localise();
  }
})();
