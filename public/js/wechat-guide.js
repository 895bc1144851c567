// The guide inside WeChat: copy the order's pay link, to paste into the phone's browser.
(function () {
  var button = document.getElementById("copy-pay-link");
  var field = document.getElementById("pay-link");
  if (!button || !field) return;
  function copied() { document.getElementById("copy-pay-link-done").hidden = false; }
  function selectAndCopy() {
    field.focus();
    field.select();
    try { if (document.execCommand("copy")) copied(); } catch (e) {}
  }
  button.addEventListener("click", function () {
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(field.value).then(copied, selectAndCopy);
    } else {
      selectAndCopy();
    }
  });
})();
