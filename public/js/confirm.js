// Forms marked data-confirm="question" submit only once the question is answered yes.
(function () {
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !confirm(question)) event.preventDefault();
  });
})();
