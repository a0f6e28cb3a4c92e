// The browser's half of passkeys: the WebAuthn JSON helpers every current
// browser has (parse*OptionsFromJSON, toJSON) between Enclave's options and
// navigator.credentials. Called from the WASM (auth/webauthn.rs).

export function passkeysSupported() {
  return typeof window.PublicKeyCredential === "function"
    && typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function";
}

export async function createPasskey(optionsJson) {
  const options = JSON.parse(optionsJson);
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey);
  const credential = await navigator.credentials.create({ publicKey });
  return JSON.stringify(credential.toJSON());
}

export async function getPasskey(optionsJson) {
  const options = JSON.parse(optionsJson);
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey);
  const credential = await navigator.credentials.get({ publicKey });
  return JSON.stringify(credential.toJSON());
}
