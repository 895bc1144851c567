// The WeChat Pay checkout (`#wechat-pay`, its order in `data-order-id`): the page watches the
// order (GET /api/v1/orders/{id} every 2 s) and goes to the order's page once it no longer waits
// for payment. Inside WeChat, `#pay-wechat-jsapi` calls WeChat's pay with the parameters in the
// `data-*` attributes; where WeixinJSBridge is missing and `data-sandbox` is set, the sandbox's
// stand-in for it takes them. An ok goes to the order's page; anything else shows
// `#wechat-pay-failed`.
(function () {
  var root = document.getElementById('wechat-pay');
  if (!root) return;
  var orderId = root.getAttribute('data-order-id');
  var orderPage = '/orders/' + encodeURIComponent(orderId);
  var done = false;

  function goToOrder() {
    if (done) return;
    done = true;
    window.location.assign(orderPage);
  }

  function watch() {
    if (done) return;
    fetch('/api/v1/orders/' + encodeURIComponent(orderId), { headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (reply) {
        var status = reply && reply.data && reply.data.status;
        if (status && status !== 'PAY_WAIT') goToOrder();
      })
      .catch(function () {})
      .then(function () { if (!done) setTimeout(watch, 2000); });
  }
  setTimeout(watch, 2000);

  var button = document.getElementById('pay-wechat-jsapi');
  if (!button) return;
  var failed = document.getElementById('wechat-pay-failed');
  var params = {
    appId: root.getAttribute('data-app-id'),
    timeStamp: root.getAttribute('data-time-stamp'),
    nonceStr: root.getAttribute('data-nonce-str'),
    package: root.getAttribute('data-package'),
    signType: root.getAttribute('data-sign-type'),
    paySign: root.getAttribute('data-pay-sign')
  };

  function answered(res) {
    button.disabled = false;
    if (res && res.err_msg === 'get_brand_wcpay_request:ok') goToOrder();
    else if (failed) failed.hidden = false;
  }

  button.addEventListener('click', function () {
    button.disabled = true;
    if (failed) failed.hidden = true;
    if (window.WeixinJSBridge) {
      window.WeixinJSBridge.invoke('getBrandWCPayRequest', params, answered);
    } else if (root.hasAttribute('data-sandbox')) {
      fetch('/sandbox/wechatpay/jsapi/pay', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(params)
      })
        .then(function (r) { return r.json(); })
        .then(answered, function () { answered(null); });
    } else {
      answered(null);
    }
  });
})();
