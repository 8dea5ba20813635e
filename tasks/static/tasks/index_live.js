/* The admin index's task counts, kept current by the dashboard's websocket snapshots. */
(function () {
  "use strict";

  function start() {
    var box = document.getElementById("task-dashboard-module");
    if (!box || !window.TaskLive || !document.querySelector(".task-index-counts")) { return; }
    window.TaskLive.connect({
      path: box.getAttribute("data-ws-path"),
      indicator: document.getElementById("live-status"),
      onMessage: function (message) {
        if (message.type !== "snapshot" || !message.counts) { return; }
        Object.keys(message.counts).forEach(function (status) {
          var node = document.getElementById("count-" + status);
          var text = String(message.counts[status]);
          if (node && node.textContent !== text) { node.textContent = text; }
        });
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
