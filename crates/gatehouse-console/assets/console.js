// Progressive enhancement only: every page works without this file.
// A button with data-copy="<id>" copies that element's text (the secret of a new key).
document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-copy]');
  if (!button || !navigator.clipboard) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(
    () => { button.textContent = 'Copied'; },
    () => { button.textContent = 'Select and copy by hand'; },
  );
});
