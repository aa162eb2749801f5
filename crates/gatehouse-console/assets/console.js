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

// Passkeys (WebAuthn needs a script). Their buttons start hidden and appear only where the
// browser can use them; the server checks everything the ceremony sends.
const canPasskey = window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON;
if (canPasskey) {
  for (const el of document.querySelectorAll('button[data-passkey]')) el.hidden = false;
}

async function postJson(url, body) {
  const resp = await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error((data.error && data.error.message) || `The gateway answered ${resp.status}.`);
  return data;
}

async function prove(optionsUrl, body) {
  const options = await postJson(optionsUrl, body);
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey);
  return (await navigator.credentials.get({ publicKey })).toJSON();
}

const ceremonies = {
  async register(button) {
    const csrf = button.dataset.csrf;
    const options = await postJson('/account/passkeys/options', { csrf });
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey);
    const credential = (await navigator.credentials.create({ publicKey })).toJSON();
    const name = document.getElementById('passkey-name').value;
    await postJson('/account/passkeys', { csrf, name, credential });
    location.reload();
  },
  async 'sign-in'(button) {
    const credential = await prove('/sign-in/passkey/options', {});
    const done = await postJson('/sign-in/passkey', { credential, next: button.dataset.next });
    location.assign(done.next);
  },
  async confirm(button) {
    const csrf = button.dataset.csrf;
    const credential = await prove('/confirm/options', { csrf });
    const done = await postJson('/confirm', { csrf, credential, next: button.dataset.next });
    location.assign(done.next);
  },
};

document.addEventListener('click', async (event) => {
  const button = event.target.closest('button[data-passkey]');
  const run = button && ceremonies[button.dataset.passkey];
  if (!run || !canPasskey) return;
  const status = document.getElementById(button.dataset.status);
  button.disabled = true;
  if (status) status.textContent = 'Waiting for your passkey…';
  try {
    await run(button);
  } catch (err) {
    if (status) status.textContent = err.name === 'NotAllowedError' ? 'Cancelled, or no passkey answered.' : err.message;
    button.disabled = false;
  }
});
