/* The live dashboard: renders the server's snapshot and the coalesced event batches.
 *
 * The page starts from the JSON rendered into #dashboard-data, then the websocket
 * (/ws/tasks/dashboard/) sends {"type": "events"} batches (at most a few a second, however
 * busy the service), {"type": "snapshot"} re-reads, and {"type": "workers"} every few
 * seconds (heartbeats send no event). The throughput chart is an SVG
 * drawn here; between re-reads of the series it adds live finished counts to the
 * current minute.
 */
(function () {
  "use strict";

  var FEED_MAX = 100;
  var SVG = "http://www.w3.org/2000/svg";
  var root, taskUrl, series = [], feedCount = 0;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function taskLink(id, label) {
    var a = el("a", {href: taskUrl.replace("{id}", id)}, label || ("#" + id));
    return a;
  }

  function time(iso) {
    return window.TaskTime ? window.TaskTime.format(iso, false, true) : iso;
  }

  function when(iso) {
    return window.TaskTime ? window.TaskTime.node(iso) : el("time", {datetime: iso}, iso);
  }

  function span(seconds) {
    if (seconds === null || seconds === undefined) { return "—"; }
    if (seconds < 60) { return seconds.toFixed(1) + "s"; }
    var m = Math.floor(seconds / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    if (d) { return d + "d " + pad(h % 24) + "h"; }
    if (h) { return h + "h " + pad(m % 60) + "m"; }
    return m + "m " + pad(Math.floor(seconds % 60)) + "s";
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function emptyRow(tbody, cols, text) {
    var tr = el("tr");
    tr.appendChild(el("td", {colspan: cols, "class": "task-muted"}, text));
    tbody.appendChild(tr);
  }

  function renderCounts(counts) {
    Object.keys(counts).forEach(function (status) {
      var node = document.getElementById("count-" + status);
      if (!node) { return; }
      var text = String(counts[status]);
      if (node.textContent !== text) {
        node.textContent = text;
        node.classList.remove("task-flash");
        void node.offsetWidth;
        node.classList.add("task-flash");
      }
    });
  }

  function cell(tr, text, cls) {
    var td = el("td", cls ? {"class": cls} : {}, text);
    tr.appendChild(td);
    return td;
  }

  function renderQueues(queues) {
    var tbody = document.getElementById("queue-depth");
    var listUrl = root.getAttribute("data-task-list-url");
    // The controls column belongs to the queue controls; keep what they put there.
    var controls = {};
    Array.prototype.forEach.call(tbody.querySelectorAll("td.task-queue-controls"), function (td) {
      controls[td.getAttribute("data-queue")] = td;
    });
    clear(tbody);
    if (!queues.length) { emptyRow(tbody, 7, "Nothing queued, waiting or running."); return; }
    queues.forEach(function (q) {
      var tr = el("tr", {"data-queue": q.queue});
      var name = cell(tr);
      name.appendChild(el("a", {href: listUrl + "?queue=" + encodeURIComponent(q.queue)}, q.queue));
      var queued = cell(tr, q.queued, "num");
      if (q.waiting) {
        queued.appendChild(document.createTextNode(" "));
        queued.appendChild(el("span", {"class": "task-muted task-queue-waiting",
                                       title: "waiting for their parents"}, "+" + q.waiting + " waiting"));
      }
      cell(tr, q.due, "num");
      cell(tr, span(q.oldest_due_seconds), "num");
      cell(tr, q.running, "num");
      cell(tr, q.unrunnable || 0, q.unrunnable ? "num task-unrunnable" : "num")
        .setAttribute("title", "queued tasks that no worker online can run");
      tr.appendChild(queueControls(controls[q.queue], q));
      tbody.appendChild(tr);
    });
  }

  // The controls cell: the server renders its Pause and Resume forms; a snapshot shows
  // the one that applies, the state and the limits (a queue first seen live gets its
  // forms at the next page load).
  function queueControls(td, q) {
    if (!td) {
      td = el("td", {"class": "task-queue-controls", "data-queue": q.queue});
      td.appendChild(el("span", {"class": "task-queue-state"}));
      td.appendChild(document.createTextNode(" "));
      td.appendChild(el("span", {"class": "task-queue-limits task-muted"}));
    }
    var state = td.querySelector(".task-queue-state");
    if (state) {
      state.textContent = q.paused ? "paused" : "running";
      state.className = "task-queue-state" + (q.paused ? " task-queue-paused" : "");
    }
    var limits = td.querySelector(".task-queue-limits");
    if (limits) { limits.textContent = q.limits || ""; }
    var pause = td.querySelector("form.task-queue-pause");
    var resume = td.querySelector("form.task-queue-resume");
    if (pause) { pause.hidden = !!q.paused; }
    if (resume) { resume.hidden = !q.paused; }
    return td;
  }

  function renderFailing(failing) {
    var tbody = document.getElementById("failing");
    clear(tbody);
    if (!failing.length) { emptyRow(tbody, 4, "No failures in the last hour."); return; }
    failing.forEach(function (f) {
      var tr = el("tr");
      cell(tr, f.type);
      var details = el("details");
      var summary = el("summary", {title: f.message});
      summary.appendChild(el("code", {}, f.error_class));
      details.appendChild(summary);
      details.appendChild(el("p", {"class": "task-error-message"}, f.message));
      if (f.traceback) { details.appendChild(el("pre", {"class": "task-pre task-traceback"}, f.traceback)); }
      cell(tr, null, "task-error").appendChild(details);
      var runs = cell(tr, f.runs, "num");
      runs.setAttribute("title", f.final + " with no retry left");
      if (f.final) { runs.appendChild(el("span", {"class": "task-muted"}, " (" + f.final + " final)")); }
      var latest = cell(tr);
      latest.appendChild(taskLink(f.id));
      latest.appendChild(document.createTextNode(" "));
      latest.appendChild(when(f.at));
      tbody.appendChild(tr);
    });
  }

  // A worker's state follows its last heartbeat between snapshots too: a killed worker
  // sends no event, so the page ages it by itself (from the server's clock at the snapshot).
  var liveness = {online: 15, lost: 30}, snapshotAt = null, receivedAt = 0;

  function workerState(lastSeen) {
    var age = (snapshotAt - new Date(lastSeen)) / 1000 + (Date.now() - receivedAt) / 1000;
    return age <= liveness.online ? "online" : age <= liveness.lost ? "late" : "lost";
  }

  function paintWorkerStates() {
    if (snapshotAt === null) { return; }
    var rows = document.querySelectorAll("#workers-online tr[data-last-seen]");
    Array.prototype.forEach.call(rows, function (tr) {
      var state = workerState(tr.getAttribute("data-last-seen"));
      var badge = tr.querySelector(".task-worker-state");
      if (badge && badge.textContent !== state) {
        badge.textContent = state;
        badge.className = "task-worker-state task-worker-" + state;
      }
      tr.className = state === "online" ? "" : "task-stale";
    });
  }

  function renderWorkers(workers) {
    var tbody = document.getElementById("workers-online");
    var listUrl = root.getAttribute("data-task-list-url");
    clear(tbody);
    if (!workers.length) { emptyRow(tbody, 6, "No workers registered."); return; }
    workers.forEach(function (w) {
      var tr = el("tr", {"data-worker": w.id, "data-last-seen": w.last_seen});
      cell(tr, w.host).setAttribute("title", w.id);
      cell(tr, w.pid, "num");
      cell(tr, w.queues.length ? w.queues.join(", ") : "all queues");
      cell(tr).appendChild(el("span", {"class": "task-worker-state task-worker-" + w.state}, w.state));
      var running = cell(tr, w.running + " / " + w.concurrency);
      (w.running_ids || []).forEach(function (id, i) {
        running.appendChild(document.createTextNode(" "));
        running.appendChild(taskLink(id));
        var progress = (w.running_progress || [])[i];
        if (progress) {
          running.appendChild(document.createTextNode(" "));
          running.appendChild(el("span", {"class": "task-progress"}, progress));
        }
      });
      if (w.running) {
        running.appendChild(document.createTextNode(" "));
        running.appendChild(el("a", {href: listUrl + "?worker=" + encodeURIComponent(w.id), "class": "task-muted"}, "all"));
      }
      cell(tr).appendChild(when(w.last_seen));
      tbody.appendChild(tr);
    });
  }

  // The range charts are drawn by the server; re-fetch them now and then.
  function refreshCharts() {
    var box = document.getElementById("range-charts");
    if (!box || !window.fetch) { return; }
    window.fetch(box.getAttribute("data-url"), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.querySelector("#range-charts");
        if (fresh) { box.parentNode.replaceChild(fresh, box); }
      })
      .catch(function () { /* the next refresh tries again */ });
  }

  function drawChart() {
    var chart = document.getElementById("throughput-chart");
    if (!chart) { return; }
    clear(chart);
    var W = 600, H = 180, left = 34, bottom = 18, top = 8;
    var n = series.length || 60;
    var max = 1, total = {succeeded: 0, failed: 0};
    series.forEach(function (p) {
      max = Math.max(max, p.succeeded + p.failed);
      total.succeeded += p.succeeded;
      total.failed += p.failed;
    });
    var plotH = H - bottom - top, barW = (W - left) / n;
    // Grid lines and the y scale: 0, half, max.
    [0, 0.5, 1].forEach(function (f) {
      var y = top + plotH * (1 - f);
      chart.appendChild(svg("line", {x1: left, x2: W, y1: y, y2: y, "class": "chart-grid"}));
      var label = svg("text", {x: left - 4, y: y + 3, "class": "chart-label", "text-anchor": "end"});
      label.textContent = String(Math.round(max * f));
      chart.appendChild(label);
    });
    series.forEach(function (p, i) {
      var x = left + i * barW + 0.5;
      var hs = plotH * p.succeeded / max, hf = plotH * p.failed / max;
      var title = time(p.minute) + ": " + p.succeeded + " succeeded, " + p.failed + " failed";
      [["succeeded", hs, top + plotH - hs], ["failed", hf, top + plotH - hs - hf]].forEach(function (b) {
        if (b[1] <= 0) { return; }
        var rect = svg("rect", {x: x, y: b[2], width: Math.max(1, barW - 1), height: b[1], "class": "chart-" + b[0]});
        var t = svg("title", {});
        t.textContent = title;
        rect.appendChild(t);
        chart.appendChild(rect);
      });
      if (i % 15 === 0 || i === n - 1) {
        var tick = svg("text", {x: i === n - 1 ? W : x, y: H - 4, "class": "chart-label",
                                "text-anchor": i === n - 1 ? "end" : "start"});
        tick.textContent = i === n - 1 ? "now" : time(p.minute).replace(/:\d\d(\s|$)/, "$1");
        chart.appendChild(tick);
      }
    });
    var totalNode = document.getElementById("throughput-total");
    if (totalNode) {
      totalNode.textContent = total.succeeded + " succeeded, " + total.failed + " failed in the last hour";
    }
  }

  // Live finished counts go into the current minute until the next re-read of the series.
  function addToChart(totals) {
    var s = totals.task_succeeded || 0, f = totals.task_failed || 0;
    if (!series.length || !(s || f)) { return; }
    var now = new Date();
    now.setSeconds(0, 0);
    var last = series[series.length - 1];
    while (new Date(last.minute) < now) {
      var next = new Date(new Date(last.minute).getTime() + 60000).toISOString();
      series.push({minute: next, succeeded: 0, failed: 0});
      series.shift();
      last = series[series.length - 1];
    }
    last.succeeded += s;
    last.failed += f;
    drawChart();
  }

  function feedEntry(ev) {
    var li = el("li", {"class": "task-feed-item"});
    var at = el("span", {"class": "task-feed-time"});
    at.appendChild(window.TaskTime ? window.TaskTime.node(ev.at, {timeOnly: true}) : document.createTextNode(ev.at));
    li.appendChild(at);
    li.appendChild(el("span", {"class": "task-event task-event-" + ev.event}, ev.event));
    var what = el("span", {"class": "task-feed-what"});
    var ids = ev.ids || [];
    if (ev.count > 1) { what.appendChild(document.createTextNode(ev.count + " tasks: ")); }
    ids.slice(0, 5).forEach(function (id, i) {
      if (i) { what.appendChild(document.createTextNode(", ")); }
      what.appendChild(taskLink(id));
    });
    if (ids.length > 5 || ev.count > ids.length && ids.length) {
      what.appendChild(document.createTextNode(" …"));
    }
    var extra = [ev.type, ev.queue && ("queue " + ev.queue), ev.worker && ("worker " + ev.worker), ev.details]
      .filter(Boolean).join(" · ");
    if (extra) { what.appendChild(el("span", {"class": "task-muted"}, " " + extra)); }
    li.appendChild(what);
    return li;
  }

  function addEvents(events, newestFirst) {
    var feed = document.getElementById("event-feed");
    var list = newestFirst ? events.slice().reverse() : events;
    list.forEach(function (ev) {
      feed.insertBefore(feedEntry(ev), feed.firstChild);
      feedCount += 1;
    });
    while (feed.children.length > FEED_MAX) { feed.removeChild(feed.lastChild); }
    feed.setAttribute("data-count", String(feedCount));
  }

  function renderSnapshot(s) {
    if (s.liveness) { liveness = s.liveness; }
    if (s.at) { snapshotAt = new Date(s.at); receivedAt = Date.now(); }
    renderCounts(s.counts || {});
    renderQueues(s.queues || []);
    renderFailing(s.failing || []);
    renderWorkers(s.workers || []);
    paintWorkerStates();
    if (s.throughput) { series = s.throughput.slice(); drawChart(); }
    root.setAttribute("data-snapshot-at", s.at || "");
  }

  function onMessage(message) {
    if (message.type === "snapshot") {
      renderSnapshot(message);
    } else if (message.type === "workers") {
      // Heartbeats send no event: the server re-reads the workers every few seconds.
      snapshotAt = new Date(message.at);
      receivedAt = Date.now();
      renderWorkers(message.workers || []);
      paintWorkerStates();
    } else if (message.type === "events") {
      addEvents(message.events || [], false);
      addToChart(message.totals || {});
      var rate = document.getElementById("feed-rate");
      if (rate) {
        rate.textContent = message.dropped ? "(busy: " + message.dropped + " more events summarised)" : "";
      }
    }
  }

  function start() {
    root = document.querySelector(".task-dashboard");
    if (!root) { return; }
    taskUrl = root.getAttribute("data-task-url");
    var initial = JSON.parse(document.getElementById("dashboard-data").textContent);
    renderSnapshot(initial.snapshot);
    clear(document.getElementById("event-feed"));
    addEvents(initial.events || [], true);
    window.setInterval(paintWorkerStates, 1000);
    var charts = document.getElementById("range-charts");
    var every = charts ? parseInt(charts.getAttribute("data-refresh"), 10) : 0;
    if (every > 0) { window.setInterval(refreshCharts, every * 1000); }
    window.TaskLive.connect({
      path: root.getAttribute("data-ws-path"),
      indicator: document.getElementById("live-status"),
      onMessage: onMessage
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
