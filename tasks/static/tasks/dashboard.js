/* The live dashboard: renders the server's snapshot and the coalesced event batches.
 *
 * The page starts from the JSON rendered into #dashboard-data, then the websocket
 * (/ws/tasks/dashboard/) sends {"type": "events"} batches (at most a few a second, however
 * busy the service) and {"type": "snapshot"} re-reads. The throughput chart is an SVG
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
    var d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString();
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

  function renderQueues(queues) {
    var tbody = document.getElementById("queue-depth");
    clear(tbody);
    if (!queues.length) { emptyRow(tbody, 5, "Nothing waiting."); return; }
    queues.forEach(function (q) {
      var tr = el("tr", q.unrunnable ? {"class": "task-unrunnable"} : {});
      tr.appendChild(el("td", {}, q.queue));
      tr.appendChild(el("td", {}, q.type));
      tr.appendChild(el("td", {"class": "num"}, q.waiting));
      tr.appendChild(el("td", {"class": "num"}, q.due));
      tr.appendChild(el("td", {"class": "num", "title": "waiting tasks that no worker online can run"}, q.unrunnable || 0));
      tbody.appendChild(tr);
    });
  }

  function renderFailures(failures) {
    var tbody = document.getElementById("recent-failures");
    clear(tbody);
    if (!failures.length) { emptyRow(tbody, 4, "No failures in the last hour."); return; }
    failures.forEach(function (f) {
      var tr = el("tr");
      var td = el("td");
      td.appendChild(taskLink(f.id, "#" + f.id + " " + f.name));
      tr.appendChild(td);
      tr.appendChild(el("td", {}, f.type));
      tr.appendChild(el("td", {}, time(f.at)));
      tr.appendChild(el("td", {"class": "task-error"}, f.error));
      tbody.appendChild(tr);
    });
  }

  function renderWorkers(workers) {
    var tbody = document.getElementById("workers-online");
    clear(tbody);
    if (!workers.length) { emptyRow(tbody, 5, "No workers registered."); return; }
    workers.forEach(function (w) {
      var tr = el("tr", {"class": w.online ? "" : "task-stale"});
      tr.appendChild(el("td", {title: w.id}, w.host));
      tr.appendChild(el("td", {"class": "num"}, w.pid));
      tr.appendChild(el("td", {}, w.queues.join(", ")));
      tr.appendChild(el("td", {"class": "num"}, w.running + " / " + w.concurrency));
      tr.appendChild(el("td", {}, time(w.last_seen) + (w.online ? "" : " (silent)")));
      tbody.appendChild(tr);
    });
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
    li.appendChild(el("span", {"class": "task-feed-time"}, time(ev.at)));
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
    renderCounts(s.counts || {});
    renderQueues(s.queues || []);
    renderFailures(s.failures || []);
    renderWorkers(s.workers || []);
    if (s.throughput) { series = s.throughput.slice(); drawChart(); }
    root.setAttribute("data-snapshot-at", s.at || "");
  }

  function onMessage(message) {
    if (message.type === "snapshot") {
      renderSnapshot(message);
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
    addEvents(initial.events || [], true);
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
