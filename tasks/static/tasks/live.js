/* A websocket to the Task Service with reconnects and a visible connection state.
 *
 * TaskLive.connect({path, indicator, onOpen(send), onMessage(msg)}) opens
 * ws(s)://<this host><path>. When the connection drops it says so on `indicator` and
 * retries with exponential backoff (0.5 s doubling to 10 s, with jitter) until the server
 * is back. Close codes 4401/4403 (not logged in / not staff) stop the retries.
 * Our own code, no dependencies: the admin must work without internet.
 */
(function () {
  "use strict";

  var REFUSED = {4401: "not logged in: reload the page to log in", 4403: "staff only"};

  function setState(indicator, state, text) {
    if (!indicator) { return; }
    indicator.className = "live-status live-" + state;
    indicator.textContent = text;
    indicator.setAttribute("data-state", state);
  }

  function connect(options) {
    var indicator = options.indicator;
    var attempt = 0;
    var socket = null;
    var retryTimer = null;
    var countdownTimer = null;

    function url() {
      var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      return scheme + window.location.host + options.path;
    }

    function send(message) {
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify(message));
      }
    }

    function scheduleRetry() {
      var delay = Math.min(10000, 500 * Math.pow(2, attempt));
      delay = Math.round(delay * (0.75 + Math.random() * 0.5));
      attempt += 1;
      var due = Date.now() + delay;
      function tick() {
        var left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
        setState(indicator, "lost", "connection lost: reconnecting" + (left ? " in " + left + " s" : "…"));
      }
      tick();
      clearInterval(countdownTimer);
      countdownTimer = setInterval(tick, 500);
      retryTimer = setTimeout(function () {
        clearInterval(countdownTimer);
        open();
      }, delay);
    }

    function open() {
      if (attempt === 0) { setState(indicator, "connecting", "connecting…"); }
      try {
        socket = new WebSocket(url());
      } catch (err) {
        scheduleRetry();
        return;
      }
      socket.onopen = function () {
        attempt = 0;
        setState(indicator, "ok", "live");
        if (options.onOpen) { options.onOpen(send); }
      };
      socket.onmessage = function (event) {
        var message;
        try { message = JSON.parse(event.data); } catch (err) { return; }
        if (message.type === "error" && REFUSED[message.code]) { return; }
        options.onMessage(message, send);
      };
      socket.onclose = function (event) {
        socket = null;
        if (REFUSED[event.code]) {
          setState(indicator, "refused", "live updates refused: " + REFUSED[event.code]);
          return;
        }
        scheduleRetry();
      };
    }

    open();
    return {
      send: send,
      close: function () {
        clearTimeout(retryTimer);
        clearInterval(countdownTimer);
        if (socket) { socket.onclose = null; socket.close(); }
      }
    };
  }

  window.TaskLive = {connect: connect, setState: setState};
})();
