// Countdowns: every [data-secs-left] element shows the time left as HH:MM:SS (hours past a day,
// never below zero), ticking each second; a new data-secs-left value restarts it.
(function () {
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-secs-left]").forEach(function (el) {
      var secs = el.getAttribute("data-secs-left");
      if (el.getAttribute("data-seen") !== secs) {
        el.setAttribute("data-seen", secs);
        el.setAttribute("data-ends", String(now + Number(secs) * 1000));
      }
      var left = Math.max(0, Math.round((Number(el.getAttribute("data-ends")) - now) / 1000));
      el.textContent = pad(Math.floor(left / 3600)) + ":" + pad(Math.floor(left / 60) % 60) + ":" + pad(left % 60);
    });
  }
  tick();
  setInterval(tick, 1000);
})();
