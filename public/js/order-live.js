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
  // The API's China time "2026-12-04 21:05:09" as the page writes times (Lang::time).
  function shopperTime(text) {
    var m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}:\d{2})/.exec(text);
    if (!m) return text;
    if (document.documentElement.lang !== "zh-CN") return m[1] + "-" + m[2] + "-" + m[3] + " " + m[4];
    return m[1] + "年" + Number(m[2]) + "月" + Number(m[3]) + "日 " + m[4];
  }
  // A group order's team: paid seats, its state in words, and the countdown while it forms.
  var teamWords = {};
  document.querySelectorAll("#team-words [data-state]").forEach(function (item) {
    teamWords[item.getAttribute("data-state")] = item.getAttribute("data-words");
  });
  function showTeam(order) {
    var box = document.getElementById("team");
    if (!box || !order.team) return;
    box.setAttribute("data-team-status", order.team.status);
    document.getElementById("team-paid").textContent = order.team.completeCount;
    document.getElementById("team-target").textContent = order.team.targetCount;
    if (order.teamState) document.getElementById("team-state").textContent = teamWords[order.teamState] || "";
    document.getElementById("team-countdown-line").hidden = order.team.status !== "PROGRESS";
    document.getElementById("team-countdown").setAttribute("data-secs-left", order.team.validSecsLeft);
  }
  function show(order) {
    // A paid group order reads 待成团 until its team forms.
    var key = order.status === "PAY_SUCCESS" && order.teamId ? "TEAM_WAIT" : order.status;
    var said = words[key] || { words: order.status, detail: "" };
    var status = document.getElementById("order-status");
    status.textContent = said.words;
    status.setAttribute("data-status", order.status);
    status.className = "status status-" + order.status;
    document.getElementById("order-status-text").textContent = said.detail;
    showTeam(order);
    if (order.payTime) document.getElementById("order-pay-time").textContent = shopperTime(order.payTime);
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
