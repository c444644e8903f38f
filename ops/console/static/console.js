// The console's only script of its own (the Content-Security-Policy allows no inline
// script or event handler): a button with data-close-panel closes the panel it is in.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-close-panel]");
  if (button) {
    button.closest(".panel")?.remove();
  }
});
