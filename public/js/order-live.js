// Live order status: a WebSocket pushes every change; if it cannot connect, poll the API.
(function () {
  var card = document.querySelector("[data-order-id]");
  if (!card) return;
  var orderId = card.getAttribute("data-order-id");
  var words = {
    CREATE: "Creating the payment form…", PAY_WAIT: "Waiting for your payment at Alipay…",
    PAY_SUCCESS: "Paid. Preparing your delivery…", MARKET: "Team complete. Preparing your delivery…", DEAL_DONE: "Paid and delivered. Thank you!",
    CLOSE: "Closed without payment.", REFUND_WAIT: "Refund in progress…", REFUNDED: "Refunded."
  };
  // A group order's team: paid seats, its state in words, and the countdown while it forms.
  function showTeam(order) {
    var box = document.getElementById("team");
    if (!box || !order.team) return;
    box.setAttribute("data-team-status", order.team.status);
    document.getElementById("team-paid").textContent = order.team.completeCount;
    document.getElementById("team-target").textContent = order.team.targetCount;
    if (order.teamStatusText) document.getElementById("team-state").textContent = order.teamStatusText;
    document.getElementById("team-countdown-line").hidden = order.team.status !== "PROGRESS";
    document.getElementById("team-countdown").setAttribute("data-secs-left", order.team.validSecsLeft);
  }
  function show(order) {
    var status = document.getElementById("order-status");
    status.textContent = order.status;
    status.className = "status status-" + order.status;
    document.getElementById("order-status-text").textContent = words[order.status] || "";
    var statusZh = document.getElementById("order-status-zh");
    if (statusZh && order.statusText) statusZh.textContent = order.statusText;
    showTeam(order);
    if (order.payTime) document.getElementById("order-pay-time").textContent = order.payTime;
    if (order.tradeNo) document.getElementById("order-trade-no").textContent = order.tradeNo;
    // The actions its status allows (取消订单 while open, 申请退款 once paid).
    document.querySelectorAll("[data-statuses]").forEach(function (form) {
      form.hidden = form.getAttribute("data-statuses").split(" ").indexOf(order.status) < 0;
    });
  }
  function poll() {
    fetch("/api/v1/orders/" + orderId, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (body) { if (body.code === "0000") show(body.data); })
      .catch(function () {})
      .then(function () { setTimeout(poll, 2000); });
  }
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var opened = false;
  try {
    var socket = new WebSocket(scheme + location.host + "/orders/" + orderId + "/live");
    socket.onopen = function () { opened = true; };
    socket.onmessage = function (event) { show(JSON.parse(event.data)); };
    socket.onclose = function () { if (!opened) poll(); else setTimeout(poll, 1000); };
  } catch (e) {
    poll();
  }
})();
