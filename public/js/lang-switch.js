// The footer's language links keep the page's own query (a signed pay link, a login's next),
// changing only `lang`; without JavaScript they lead to `?lang=` alone.
(function () {
  document.querySelectorAll("#lang-switch a[hreflang]").forEach(function (link) {
    var params = new URLSearchParams(location.search);
    params.set("lang", link.getAttribute("hreflang"));
    link.href = location.pathname + "?" + params.toString();
  });
})();
