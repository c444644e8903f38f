// The console's only script of its own (the Content-Security-Policy allows no inline
// script or event handler).

// A button with data-close-panel closes the panel it is in.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-close-panel]");
  if (button) {
    button.closest(".panel")?.remove();
  }
});

// The dead letters are not listed on a timer (a listing receives the messages); they are
// listed again once each time the dead-letter queues' counts, which the overview reads
// every few seconds without receiving anything, change.
function deadLetterDepths() {
  return document.getElementById("dead-letter-depths")?.dataset.depths;
}
let listedDepths;
document.addEventListener("DOMContentLoaded", () => {
  listedDepths = deadLetterDepths(); // the page came with its listing
});
document.addEventListener("htmx:afterSettle", () => {
  const depths = deadLetterDepths();
  if (depths !== undefined && depths !== listedDepths) {
    listedDepths = depths;
    htmx.trigger(document.body, "dead-letters-changed");
  }
});
