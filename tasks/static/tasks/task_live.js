/* Live status badges on the task list and task pages (no reload).
 *
 * Every badge rendered by the admin carries data-task-id; this script tells the server
 * which ids are on screen ({"watch": [ids]}) and repaints the badges it hears about.
 */
(function () {
  "use strict";

  var STATUSES = ["waiting", "queued", "running", "retrying", "succeeded", "failed", "cancelled"];

  function badges() {
    return Array.prototype.slice.call(document.querySelectorAll(".task-status[data-task-id]"))
      .filter(function (el) { return el.getAttribute("data-task-id"); });
  }

  function paint(id, info) {
    badges().forEach(function (el) {
      if (el.getAttribute("data-task-id") !== id || STATUSES.indexOf(info.status) < 0) { return; }
      if (el.textContent === info.status) { return; }
      el.textContent = info.status;
      el.className = "task-status task-status-" + info.status + " task-flash";
      var row = el.closest("tr");
      if (row) {
        row.classList.remove("task-row-changed");
        void row.offsetWidth;  // restart the highlight animation
        row.classList.add("task-row-changed");
      }
    });
    var retries = document.querySelector('[data-task-retries="' + id + '"]');
    if (retries && info.retries) { retries.textContent = info.retries; }
    // The progress field of the task page; null once a new attempt starts or a person retries.
    var progress = document.querySelector('[data-task-progress="' + id + '"]');
    if (progress && "progress" in info) {
      var text = progressText(info.progress);
      if (progress.textContent !== text) { progress.textContent = text; }
    }
  }

  // As tasks.admin.display.progress writes it: "done / total (pct%) message", or a dash.
  function progressText(p) {
    if (!p || typeof p.done !== "number") { return "\u2014"; }
    var text = String(p.done);
    if (typeof p.total === "number" && p.total) {
      text += " / " + p.total + " (" + Math.round(100 * p.done / p.total) + "%)";
    }
    return text + (p.message ? " " + p.message : "");
  }

  function start() {
    if (!window.TaskLive) { return; }
    var on = badges();
    if (!on.length) { return; }
    var ids = on.map(function (el) { return parseInt(el.getAttribute("data-task-id"), 10); })
      .filter(function (n) { return !isNaN(n); });
    var title = document.querySelector("#content h1") || document.querySelector("#content");
    var indicator = document.createElement("span");
    indicator.id = "live-status";
    title.appendChild(document.createTextNode(" "));
    title.appendChild(indicator);
    window.TaskLive.connect({
      path: "/ws/tasks/list/",
      indicator: indicator,
      onOpen: function (send) { send({watch: ids.slice(0, 500)}); },
      onMessage: function (message) {
        if (message.type !== "tasks") { return; }
        Object.keys(message.tasks).forEach(function (id) { paint(id, message.tasks[id]); });
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
