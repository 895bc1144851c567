// The checkout page: take the shopper on to the cashier at once (the button stays for browsers
// without JavaScript).
(function () {
  var form = document.forms.punchout_form;
  if (form) form.submit();
})();
