// Live order status: a WebSocket pushes every change; if it cannot connect, poll the API.
(function () {
  var card = document.querySelector("[data-order-id]");
  if (!card) return;
  var orderId = card.getAttribute("data-order-id");
  // Each status's words in the page's language, as the server wrote them into #status-words.
  var words = {};
  document.querySelectorAll("#status-words [data-status]").forEach(function (item) {
    words[item.getAttribute("data-status")] = {
      words: item.getAttribute("data-words"), detail: item.getAttribute("data-detail")
    };
  });
  function show(order) {
    var said = words[order.status] || { words: order.status, detail: "" };
    var status = document.getElementById("order-status");
    status.textContent = said.words;
    status.setAttribute("data-status", order.status);
    status.className = "status status-" + order.status;
    document.getElementById("order-status-text").textContent = said.detail;
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
