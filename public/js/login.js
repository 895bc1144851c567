// The login page: count down the QR code's life and poll until the phone has scanned it.
(function () {
  var card = document.querySelector(".login[data-ticket]");
  if (!card) return;
  var ticket = card.getAttribute("data-ticket");
  // Only a path on this site, as the server would have it (the attribute is not trusted).
  var next = card.getAttribute("data-next") || "/";
  if (!/^\/[\x21-\x7e]*$/.test(next) || next.indexOf("//") >= 0 || next.indexOf("\\") >= 0) next = "/";
  var left = parseInt(card.getAttribute("data-expires-in"), 10);
  var countdown = document.getElementById("countdown");
  var timer = setInterval(function () {
    left -= 1;
    countdown.textContent = Math.max(left, 0);
    if (left <= 0) {
      clearInterval(timer);
      document.getElementById("login-expired").hidden = false;
      document.getElementById("qrcode").style.opacity = 0.2;
    }
  }, 1000);
  function poll() {
    if (left <= 0) return;
    fetch("/api/v1/login/check_login?ticket=" + encodeURIComponent(ticket), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        if (body.code === "0000") {
          document.getElementById("login-status").textContent = card.getAttribute("data-done");
          location.href = next;
        } else {
          setTimeout(poll, 1500);
        }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
